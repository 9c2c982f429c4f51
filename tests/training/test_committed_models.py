"""Every committed model version agrees with its model card, its evaluation report and its own
smoke golden file: version number, labels, input size and headline figures (version folders are
copied and renumbered by hand when an experiment is promoted, which is where drift would creep
in)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from ct_contract import signatures as mc

REPO = Path(__file__).resolve().parents[2]
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
    golden = json.loads((MODELS / task / str(version) / "smoke_golden.json").read_text())
    assert (golden["task"], golden["version"]) == (task, version)


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
    golden = json.loads((version_dir / "smoke_golden.json").read_text())
    assert list(golden["predict"]) == labels
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


LATEST = {task: max(v for t, v in VERSIONS if t == task) for task, _ in VERSIONS}


@pytest.mark.parametrize(("task", "version"), VERSIONS)
def test_info_json_and_explain_agree_with_tasks_py(task, version):
    """Versions that describe themselves (every newest one must) say what training/tasks.py
    says, judge their validation against its floor, and explain with the served probabilities."""
    import tensorflow as tf

    from training.tasks import check_floor, get_task

    loaded = tf.saved_model.load(str(MODELS / task / str(version)))
    info_out = loaded.signatures[mc.INFO_SIGNATURE](**{mc.INFO_INPUT_KEY: tf.zeros([2], tf.int32)})
    if mc.INFO_JSON_KEY not in info_out:
        assert version != LATEST[task], "the newest version must carry info_json"
        return
    info = json.loads(info_out[mc.INFO_JSON_KEY].numpy()[0])
    spec = get_task(task)
    assert info[mc.INFO_WINDOW] == spec.window
    assert info[mc.INFO_LABEL_GROUPS] == spec.label_groups
    assert (info[mc.INFO_VALIDATED], info[mc.INFO_VALIDATED_REASON]) == check_floor(
        spec, info[mc.INFO_VALIDATION]
    )
    assert info[mc.INFO_VALIDATION]["how"]
    metrics = json.loads((_report_dir(_card(task, version)) / "metrics.json").read_text())
    assert metrics["info_json"] == info
    if "scan_level" in metrics:
        assert info[mc.INFO_SCAN_RULE]["threshold"] == metrics["scan_level"]["threshold"]

    size = loaded.signatures[mc.PREDICT_SIGNATURE].structured_input_signature[1][mc.INPUT_KEY]
    x = tf.constant(np.random.default_rng(0).integers(0, 256, (2, *size.shape[1:]), np.uint8))
    out = loaded.signatures[mc.EXPLAIN_SIGNATURE](**{mc.INPUT_KEY: x})
    served = loaded.signatures[mc.PREDICT_SIGNATURE](**{mc.INPUT_KEY: x})
    np.testing.assert_allclose(
        out[mc.PROBABILITIES_KEY].numpy(), served[mc.PROBABILITIES_KEY].numpy(), atol=1e-6
    )
    heat = out[mc.HEATMAP_KEY].numpy()
    assert heat.ndim == 3 and np.isfinite(heat).all() and 0 <= heat.min() <= heat.max() <= 1


def _named_commands() -> set[str]:
    """The `python -m training...` modules that committed model cards, smoke goldens and training
    reports name as the command that made them."""
    texts = [p.read_text() for p in MODELS.glob("*/*/*") if p.suffix in (".md", ".json")]
    texts += [p.read_text() for p in (REPO / "training" / "reports").rglob("*.md")]
    texts += [p.read_text() for p in (REPO / "training" / "reports").rglob("metrics.json")]
    return {m for text in texts for m in re.findall(r"python -m (training[\w.]*\w)", text)}


def test_the_commands_committed_files_name_still_run():
    """Cards and reports are records: a module they name is kept (or forwards) when code moves."""
    import importlib.util

    named = _named_commands()
    assert {"training.train", "training.frozen_cv", "training.reexport"} <= named
    for module in sorted(named):
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"{module} is named by a committed file but does not exist"
        if spec.submodule_search_locations:  # a package runs through its __main__
            assert importlib.util.find_spec(f"{module}.__main__"), f"{module} has no __main__"
        else:
            text = Path(spec.origin).read_text()
            assert 'if __name__ == "__main__":' in text, f"{module} has no command line"
