"""Every committed model version agrees with its model card and its evaluation report: version
number, labels, input size and headline figures (version folders are copied and renumbered by
hand when an experiment is promoted, which is where drift would creep in)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gateway import model_contract as mc

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "model-server" / "models"
VERSIONS = sorted(
    (task.name, int(version.name))
    for task in MODELS.iterdir()
    if task.is_dir()
    for version in task.iterdir()
    if version.name.isdigit()
)


def _card(task: str, version: int) -> str:
    return (MODELS / task / str(version) / "model_card.md").read_text()


def _report_dir(card: str) -> Path:
    match = re.search(r"^- Report: (\S+)/report\.md$", card, re.MULTILINE)
    assert match, "the model card names no report"
    return REPO / match.group(1)


def test_there_are_committed_models():
    assert {task for task, _ in VERSIONS} >= {"brain-stroke", "brain-tumor"}


@pytest.mark.parametrize(("task", "version"), VERSIONS)
def test_card_and_report_name_the_same_version(task, version):
    card = _card(task, version)
    assert card.startswith(f"# Model card: {task}, version {version}\n")
    report_dir = _report_dir(card)
    assert report_dir == REPO / "training" / "reports" / task / f"v{version}"
    report = (report_dir / "report.md").read_text()
    assert report.startswith(f"# {task} — model version {version}\n")
    for needed in ("metrics.json", "split.json", "audit.md", "confusion_matrix.png"):
        assert (report_dir / needed).is_file(), needed


@pytest.mark.parametrize(("task", "version"), VERSIONS)
def test_card_report_and_model_agree(task, version):
    import tensorflow as tf

    version_dir = MODELS / task / str(version)
    card = _card(task, version)
    metrics = json.loads((_report_dir(card) / "metrics.json").read_text())
    loaded = tf.saved_model.load(str(version_dir))

    info = loaded.signatures[mc.INFO_SIGNATURE](**{mc.INFO_INPUT_KEY: tf.zeros([1], tf.int32)})
    labels = [s.decode() for s in info[mc.LABELS_KEY].numpy()[0]]
    assert f"- Labels (output order): {', '.join(labels)}\n" in card
    assert list(metrics["per_class"]) == labels
    threshold = float(info[mc.THRESHOLD_KEY].numpy()[0])
    assert threshold == pytest.approx(metrics.get("threshold", -1.0), abs=1e-6)

    spec = loaded.signatures[mc.PREDICT_SIGNATURE].structured_input_signature[1][mc.INPUT_KEY]
    size, channels = spec.shape[1], spec.shape[3]
    assert f"- Input: uint8 greyscale {size}x{size}x{channels}," in card
    assert (version_dir / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
    figures = re.search(r"accuracy ([\d.]+), macro F1 ([\d.]+)", card)
    assert figures, "the model card gives no accuracy / macro F1"
    np.testing.assert_allclose(
        [float(figures.group(1)), float(figures.group(2))],
        [metrics["accuracy"], metrics["macro_f1"]],
        atol=5e-5,
    )
