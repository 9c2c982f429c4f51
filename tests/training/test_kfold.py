"""Repeated grouped k-fold (training/data/split.py grouped_kfold), the crossval summary, and the
in-graph brain crop (training/nets/architectures.py BrainCrop)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from training.cli import TrainingError
from training.data.audit import run_audit
from training.data.split import grouped_kfold
from training.tasks import get_task

STROKE = get_task("brain-stroke")


def _slice(seed: int, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def stroke_audit(tmp_path_factory):
    root = tmp_path_factory.mktemp("stroke")
    for label, scans in (("Normal", range(1, 15)), ("Stroke", range(30, 39))):
        for scan in scans:
            for sl in range(1, 2 + scan % 4):
                path = root / label / f"{scan} ({sl}).jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                _slice(scan * 100 + sl).save(path)
    return run_audit(root, STROKE)


@pytest.mark.parametrize("seed", [1, 2, 7])
def test_every_scan_in_exactly_one_validation_fold(stroke_audit, seed):
    records = stroke_audit.records
    folds = grouped_kfold(stroke_audit, 5, seed)
    assert len(folds) == 5
    seen = Counter(
        records[i].scan for split in folds for i in {records[i].scan: i for i in split.val}.values()
    )
    all_scans = {r.scan for r in records}
    assert set(seen) == all_scans and set(seen.values()) == {1}  # each scan validated once
    for split in folds:
        train_scans = {records[i].scan for i in split.train}
        val_scans = {records[i].scan for i in split.val}
        assert not train_scans & val_scans, "a scan on both sides"
        assert train_scans | val_scans == all_scans
        assert not set(split.train) & set(split.val)
        # stratified: 14 normal and 9 stroke scans over 5 folds -> 2-3 and 1-2 per fold
        labels = Counter(
            records[[i for i in split.val if records[i].scan == s][0]].label for s in val_scans
        )
        assert 2 <= labels["Normal"] <= 3 and 1 <= labels["Stroke"] <= 2
    # every slice validated exactly once per repeat
    assert sorted(i for split in folds for i in split.val) == list(range(len(records)))


def test_folds_are_seeded(stroke_audit):
    a = [split.val for split in grouped_kfold(stroke_audit, 5, 3)]
    assert a == [split.val for split in grouped_kfold(stroke_audit, 5, 3)]
    assert a != [split.val for split in grouped_kfold(stroke_audit, 5, 4)]


def test_threshold_of_a_fold_is_chosen_on_the_other_folds():
    from training.crossval.kfold import repeat_summary

    # two folds, one slice per scan; fold 0's threshold comes from fold 1's stroke scan (0.9),
    # fold 1's from fold 0's (0.3): thresholds chosen on the folds themselves would be 0.3 and
    # 0.9 and get all four scans right
    scans = np.array(["a", "b", "c", "d"])
    positive = np.array([True, False, True, False])
    fold = np.array([0, 0, 1, 1])
    scores = np.array([0.3, 0.1, 0.9, 0.8])
    out = repeat_summary(scores, fold, positive, scans)
    assert out["counts"] == {"tp": 1, "fn": 1, "tn": 1, "fp": 1}
    assert out["scan_auc"] == pytest.approx(0.75)


def test_brain_crop_finds_the_head_and_ignores_the_frame():
    from training.nets.architectures import BrainCrop

    x = np.zeros((2, 128, 128, 1), np.float32)
    x[0, 20:100, 40:110] = 0.5  # a "head" off centre
    x[0, 120, :] = 1.0  # a thin table line: must not widen the box
    boxes = BrainCrop(32, margin=0.0).boxes(x).numpy()
    y1, x1, y2, x2 = boxes[0] * 128
    assert (y1, y2) == pytest.approx((20, 100), abs=6)  # the square is the head's longer side
    assert (x2 + x1) / 2 == pytest.approx(75, abs=3)
    assert boxes[1].tolist() == [0.0, 0.0, 1.0, 1.0]  # no head: the whole frame
    out = BrainCrop(32)(x).numpy()
    assert out.shape == (2, 32, 32, 1)
    assert out[0, 16, 16, 0] == pytest.approx(0.5)


def test_brain_crop_model_builds_at_its_crop_size():
    from training.nets.architectures import build

    model = build("brain_crop_mirror@40", 128, 1, 2)
    assert model.input_shape == (None, 128, 128, 1)
    assert model.get_layer("brain_crop").output.shape[1:3] == (40, 40)
    assert model(np.zeros((1, 128, 128, 1), np.float32)).shape == (1, 2)
    with pytest.raises(TrainingError, match="unknown architecture"):
        build("plain_cnn@40", 128, 1, 2)


def test_neighbours_follow_the_slice_order_within_a_scan(stroke_audit):
    from training.crossval.kfold import neighbour_index, with_neighbours
    from training.data.prepare import slice_number

    records = stroke_audit.records
    nb = neighbour_index(records)
    for i, r in enumerate(records):
        below, above = records[nb[i, 0]], records[nb[i, 2]]
        assert below.scan == r.scan == above.scan
        n = slice_number(r.path.name)
        assert slice_number(below.path.name) in (n - 1, n)  # n: the scan's first slice
        assert slice_number(above.path.name) in (n + 1, n)
    x = np.arange(len(records), dtype=np.uint8)[:, None, None, None] * np.ones(
        (1, 2, 2, 1), np.uint8
    )
    stacked = with_neighbours(x, records)
    assert stacked.shape == (len(records), 2, 2, 3)
    assert (stacked[:, 0, 0, 1] == np.arange(len(records))).all()


def test_heatmap_of_a_cropping_model_is_drawn_over_the_whole_frame():
    import keras
    import tensorflow as tf

    from training.export.explain import UNCROPPED_GRID, make_explain, uncrop
    from training.nets.architectures import build

    cam = tf.ones((1, 6, 6))
    boxes = tf.constant([[0.25, 0.5, 0.75, 1.0]])
    full = uncrop(cam, boxes, (8, 8)).numpy()[0]
    assert full[2:6, 4:8].min() == pytest.approx(1.0)  # inside the box
    assert full[:, :3].max() == 0.0 and full[:1].max() == 0.0  # outside it
    keras.utils.set_random_seed(
        0
    )  # repeatable weights (with seed 0 a 1x1 map used to fill the frame)
    model = build("brain_crop_mirror@32", 64, 1, 2)
    x = np.zeros((2, 64, 64, 1), np.float32)
    x[:, 10:50, 20:60] = 0.5
    logits, heat, cls = make_explain(model, 1, flip_tta=True)(tf.constant(x))
    assert heat.shape == (2, *UNCROPPED_GRID) and logits.shape == (2, 2)
    assert float(tf.reduce_max(heat[:, :, :2])) == 0.0  # left of the head: outside the crop


@pytest.mark.slow
def test_kfold_crossval_writes_its_report_and_exports_with_its_figures(tmp_path):
    """Tiny end to end: 3 folds x 1 repeat, 1 epoch, then the all-scans model is exported with
    the k-fold figures in info_json (judged against the brain-stroke floor)."""
    import json

    import tensorflow as tf

    from ct_contract import signatures as mc
    from training.crossval import main

    root = tmp_path / "data"
    for label, scans in (("Normal", range(1, 7)), ("Stroke", range(20, 24))):
        for scan in scans:
            for sl in range(1, 4):
                path = root / label / f"{scan} ({sl}).png"
                path.parent.mkdir(parents=True, exist_ok=True)
                _slice(scan * 100 + sl, 64).save(path)
    main(
        [
            "--task", "brain-stroke", "--data", str(root), "--arch", "brain_crop_mirror@32",
            "--size", "64", "--epochs", "1", "--folds", "3", "--repeats", "1", "--export",
            "--models-root", str(tmp_path / "models"), "--reports-root", str(tmp_path / "rep"),
            "--scores-dir", str(tmp_path / "scores"),
        ]
    )  # fmt: skip
    report = tmp_path / "rep/brain-stroke/crossval-kfold-brain_crop_mirror-32-64-3x1.md"
    assert "| 1 | 2 |" in report.read_text()  # the third fold's row
    scores = json.loads(next((tmp_path / "scores").glob("*.json")).read_text())
    assert sorted(set(scores["oof"]["1"]["fold"])) == [0, 1, 2]
    version = tmp_path / "models/brain-stroke/1"
    info_fn = tf.saved_model.load(str(version)).signatures[mc.INFO_SIGNATURE]
    out = info_fn(**{mc.INFO_INPUT_KEY: tf.constant([0])})
    info = json.loads(out[mc.INFO_JSON_KEY].numpy()[0])
    assert info["validation"]["folds"] == 3 and "cross-validation" in info["validation"]["how"]
    assert info["validated"] == (info["validation"]["scan_auc"] >= 0.80)
    assert info["scan_rule"]["threshold"] > 0
    assert (tmp_path / "rep/brain-stroke/v1/report.md").exists()
