"""Multiple-instance training (training/mil.py): bag sampling, the loss, and a tiny run that must
learn a lesion that shows on only a quarter of a positive scan's slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from training import mil
from training.cli import TrainingError
from training.data.prepare import Prepared, prepare
from training.fit import fit_for
from training.tasks import get_task

STROKE = get_task("brain-stroke")


def _slice(rng: np.random.Generator, lesion: bool, size: int = 32) -> Image.Image:
    """A noisy grey 'slice'; a lesion is a bright square at a random place."""
    img = rng.normal(90, 12, (size, size)).clip(0, 255)
    if lesion:
        r, c = rng.integers(4, size - 12, 2)
        img[r : r + 8, c : c + 8] = 230
    return Image.fromarray(img.astype(np.uint8))


@pytest.fixture
def stroke_folder(tmp_path) -> Path:
    """20 normal and 20 stroke scans of 8 slices; only slices 3-4 of a stroke scan show it."""
    rng = np.random.default_rng(0)
    root = tmp_path / "stroke"
    for label, scans in (("Normal", range(1, 21)), ("Stroke", range(101, 121))):
        (root / label).mkdir(parents=True)
        for scan in scans:
            for sl in range(1, 9):
                lesion = label == "Stroke" and sl in (3, 4)
                _slice(rng, lesion).save(root / label / f"{scan} ({sl}).png")
    return root


def test_positive_bags_hold_whole_positive_scans():
    p = _prepared_stub(
        y=np.array([0, 0, 1, 1, 1, 0]),
        scans=np.array(["a", "a", "b", "b", "c", "d"]),
    )
    bags = mil.positive_bags(p, pos=1)
    assert sorted(map(list, bags)) == [[2, 3], [4]]


def test_sample_step_draws_negatives_and_bags_of_one_scan():
    rng = np.random.default_rng(1)
    neg = np.arange(0, 40)
    bags = [np.arange(40, 70), np.arange(70, 75)]  # the short scan is sampled with replacement
    negatives, bag_rows = mil.sample_step(rng, neg, bags, batch_size=16)
    assert len(set(negatives)) == 16 and set(negatives) <= set(neg)
    assert bag_rows.shape == (mil.BAGS_PER_STEP, mil.BAG_SLICES)
    for row in bag_rows:
        assert any(set(row) <= set(bag) for bag in bags)


def test_mil_loss_matches_its_definition():
    import tensorflow as tf

    rng = np.random.default_rng(2)
    n_neg, n_bags = 5, 2
    scores = rng.normal(0, 2, n_neg + n_bags * mil.BAG_SLICES).astype(np.float32)
    k = round(mil.TOP_FRACTION * mil.BAG_SLICES)
    bags = np.sort(scores[n_neg:].reshape(n_bags, -1), axis=1)[:, ::-1][:, :k].mean(axis=1)
    expected = np.log1p(np.exp(scores[:n_neg])).mean() + np.log1p(np.exp(-bags)).mean()
    got = float(mil.mil_loss(tf.constant(scores), n_neg, n_bags))
    assert got == pytest.approx(expected, rel=1e-5)


def test_mil_loss_rewards_a_bag_with_few_positive_slices():
    """Only the top slices of a bag count: a bag whose lesion shows on a quarter of its slices
    costs (almost) nothing, which a per-slice loss would not allow."""
    import tensorflow as tf

    k = round(mil.TOP_FRACTION * mil.BAG_SLICES)
    bag = np.full(mil.BAG_SLICES, -6.0, np.float32)
    bag[:k] = 6.0
    negatives = np.full(4, -6.0, np.float32)
    loss = float(mil.mil_loss(tf.constant(np.concatenate([negatives, bag])), 4, 1))
    assert loss < 0.01


@pytest.mark.slow
def test_mil_training_learns_a_lesion_on_few_slices(stroke_folder):
    p = prepare(STROKE, stroke_folder, 32, seed=5, max_per_class=None)
    model, history = fit_for(
        STROKE,
        p,
        mil=True,
        arch="plain_cnn",
        size=32,
        channels=1,
        epochs=6,
        seed=5,
        init_from=None,
        batch_size=16,
        patience=6,
        lr=3e-3,
    )
    assert set(history) == {"loss", "val_loss", "val_auc", "val_scan_auc"}
    logits = model.predict(p.x_val.astype(np.float32) / 255.0, verbose=0)
    scores = logits[:, 1] - logits[:, 0]
    lesion = np.array(
        [
            f.startswith("Stroke") and f.endswith(("(3).png", "(4).png"))
            for f in p.split_files["val"]
        ]
    )
    normal = p.y_val == 0
    # the lesion slices, never labelled as such, rank above the slices of normal scans
    ranked = np.concatenate([scores[lesion], scores[normal]])
    truth = np.r_[np.ones(lesion.sum()), np.zeros(normal.sum())]
    assert roc_auc_score(truth, ranked) >= 0.95, history


def test_mil_refuses_a_task_without_scans():
    with pytest.raises(TrainingError, match="grouped by scan"):
        fit_for(get_task("brain-tumor"), None, mil=True, arch="plain_cnn")


def _prepared_stub(y: np.ndarray, scans: np.ndarray):
    empty = np.zeros((0,))
    return Prepared(
        labels=["Normal", "Stroke"],
        x_train=empty,
        y_train=y,
        w_train=np.ones(len(y)),
        x_val=empty,
        y_val=empty,
        scans_train=scans,
        scans_val=None,
        split_summary={},
        audit_md="",
        split_files={},
    )


def test_validation_objective_scores_whole_scans_as_bags():
    # scan a (normal, 2 slices), scan b (stroke, 4 slices: top quarter = its best slice)
    scores = np.array([-1.0, -3.0, 2.0, -5.0, -5.0, -5.0])
    positive = np.array([False, False, True, True, True, True])
    scans = np.array(["a", "a", "b", "b", "b", "b"])
    expected = np.mean(np.log1p(np.exp([-1.0, -3.0]))) + np.log1p(np.exp(-2.0))
    assert mil.validation_objective(scores, positive, scans) == pytest.approx(expected)
