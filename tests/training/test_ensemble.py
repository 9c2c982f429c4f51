"""training/ensemble.py: the averaged graph, the member checks, and a tiny run that trains two
members at different sizes, assembles them and loads the export."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from tests.fixtures.common import PYTHON, REPO
from tests.training.spine_data import kaggle_spine_folder, tiny_spine_training
from training.cli import TrainingError
from training.ensemble import average_model, check_members
from training.nets.checkpoints import read_meta

LABELS = ["fracture", "normal"]


def _meta(**overrides) -> dict:
    meta = {"arch": "plain_cnn", "size": 32, "channels": 1, "n_classes": 2, "labels": LABELS}
    return {**meta, "split_seed": 7, **overrides}


def test_check_members_refuses_other_splits_labels_and_channels():
    check_members([_meta(), _meta(size=24)], seed=7, labels=LABELS)
    with pytest.raises(TrainingError, match="split seed 8"):
        check_members([_meta(), _meta(split_seed=8)], seed=7, labels=LABELS)
    with pytest.raises(TrainingError, match="labels"):
        check_members([_meta(labels=["normal", "fracture"])], seed=7, labels=LABELS)
    unrecorded = {k: v for k, v in _meta().items() if k != "split_seed"}
    with pytest.raises(TrainingError, match="lacks"):
        check_members([unrecorded], seed=7, labels=LABELS)
    with pytest.raises(TrainingError, match="channels"):
        check_members([_meta(), _meta(channels=3)], seed=7, labels=LABELS)


def test_average_model_is_the_mean_of_the_members_at_their_own_sizes():
    import keras

    from training.export.savedmodel import build_tiny_model

    big, small = build_tiny_model(32, 1, 2, seed=1), build_tiny_model(24, 1, 2, seed=2)
    ensemble = average_model([big, small], [32, 24], 32, 1)
    x = np.random.default_rng(0).random((3, 32, 32, 1)).astype(np.float32)
    resized = keras.ops.convert_to_numpy(keras.layers.Resizing(24, 24, antialias=True)(x))
    expected = (big.predict(x, verbose=0) + small.predict(resized, verbose=0)) / 2
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_two_members_assembled_exported_and_reported(tmp_path):
    import tensorflow as tf

    data = kaggle_spine_folder(tmp_path / "data")
    models, reports, ckpts = tmp_path / "models", tmp_path / "reports", tmp_path / "ckpt"
    outputs = ["--models-root", str(models), "--reports-root", str(reports)]
    for size, init_seed in (("48", "1337"), ("32", "3")):  # members differ in their init seed
        cmd = tiny_spine_training(data, size, models, reports, ckpts, "--init-seed", init_seed)
        _run(*cmd[2:])
    members = [str(ckpts / f"spine-fracture-plain_cnn-{s}.weights.h5") for s in (48, 32)]
    common = ["--task", "spine-fracture", "--data", str(data), "--members", *members]
    printed = _run("training.ensemble", *common, "--evaluate-only", *outputs)
    figures = json.loads(printed[printed.index("{") :])
    assert 0 <= figures["accuracy"] <= 1 and set(figures["f1"]) == set(LABELS)
    assert sorted(p.name for p in (models / "spine-fracture").iterdir()) == ["1", "2"]
    _run("training.ensemble", *common, "--flip-tta", *outputs)

    version_dir = models / "spine-fracture" / "3"
    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    probs = serve(image=tf.zeros([2, 48, 48, 1], tf.uint8))["probabilities"].numpy()
    assert probs.shape == (2, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    report = (reports / "spine-fracture" / "v3" / "report.md").read_text()
    assert "## Ensemble members" in report and "python -m training.ensemble" in report
    for k, size in ((1, 48), (2, 32)):
        member = reports / "spine-fracture" / "v3" / f"member{k}-plain_cnn-{size}"
        assert (member / "training_curves.png").is_file() and not (member / "split.json").exists()
        assert f"--size {size}" in report
    card = (version_dir / "model_card.md").read_text()
    assert "python -m training.ensemble" in card
    meta = read_meta(ckpts / "spine-fracture-plain_cnn-32.weights.h5")
    assert meta["split_seed"] == 1337 and meta["labels"] == LABELS  # not the init seed
    assert "--init-seed 3" in meta["command"]
    first = json.loads((reports / "spine-fracture" / "v1" / "split.json").read_text())
    second = json.loads((reports / "spine-fracture" / "v2" / "split.json").read_text())
    assert first == second


def _run(module: str, *args: str) -> str:
    done = subprocess.run(
        [PYTHON, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
