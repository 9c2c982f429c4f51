"""Audit with planted duplicates, grouped splits, and training/serving pixel identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ct_contract.preprocess import load_model_input
from training.data.audit import run_audit
from training.data.images import discover, load_pixels
from training.data.split import grouped_split
from training.tasks import get_task, stroke_scan_id

STROKE = get_task("brain-stroke")
TUMOR = get_task("brain-tumor")


def _scan_image(seed: int, size: int = 64) -> Image.Image:
    """A synthetic 'slice': smooth random blobs, distinct per seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def _write(path: Path, img: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@pytest.fixture
def planted(tmp_path) -> Path:
    """Two splits, seven images each side, with an exact copy, a re-encoded near copy and a
    cross-label conflict planted."""
    root = tmp_path / "data"
    seed = 0
    for split in ("train", "val"):
        for label in ("a", "b"):
            for k in range(6):
                seed += 1
                _write(root / split / label / f"{split}_{label}{k}.png", _scan_image(seed))
    original = root / "train" / "a" / "train_a0.png"
    (root / "val" / "a" / "copy_of_a0.png").write_bytes(original.read_bytes())  # exact, across
    Image.open(root / "train" / "b" / "train_b1.png").convert("RGB").save(
        root / "train" / "b" / "b1_again.jpg", quality=92
    )  # near, same label
    Image.open(root / "train" / "a" / "train_a2.png").save(
        root / "val" / "b" / "a2_mislabelled.png"
    )
    return root


def test_audit_finds_planted_duplicates(planted):
    result = run_audit(planted, TUMOR)
    f = result.findings
    assert f["images"] == 27
    assert f["exact_duplicate_groups"] == 2  # a0 copied; a2 saved again as identical PNG bytes
    assert f["exact_pairs_by_kind"] == {
        "across splits, same label": 1,
        "across splits, CONFLICTING labels": 1,
    }
    assert f["near_pairs_by_kind"].get("same split, same label", 0) >= 1
    clusters = {}
    for r, c in zip(result.records, result.cluster_of, strict=True):
        clusters.setdefault(c, set()).add(r.path.name)
    assert {"train_b1.png", "b1_again.jpg"} in clusters.values()


def test_split_keeps_duplicates_together_and_drops_conflicts(planted):
    result = run_audit(planted, TUMOR)
    split = grouped_split(result, 0.3, seed=1)
    names = lambda idx: {result.records[i].path.name for i in idx}  # noqa: E731
    train, val = names(split.train), names(split.val)
    assert not train & val
    assert {"train_a2.png", "a2_mislabelled.png"} <= set(
        result.records[i].path.name for i in split.dropped["conflicting labels among duplicates"]
    )
    assert ({"train_b1.png", "b1_again.jpg"} <= train) or ({"train_b1.png", "b1_again.jpg"} <= val)
    # the exact copy stays with its original: one side only, and only one of the two is kept
    kept = {"train_a0.png", "copy_of_a0.png"} & (train | val)
    assert len(kept) == 1
    assert grouped_split(result, 0.3, seed=1).val == split.val  # reproducible


def test_stroke_split_keeps_every_scan_on_one_side(tmp_path):
    root = tmp_path / "stroke"
    for label, scans in (("Normal", range(1, 9)), ("Stroke", range(20, 26))):
        for scan in scans:
            for sl in range(1, 6):
                _write(root / label / f"{scan} ({sl}).jpg", _scan_image(scan * 100 + sl))
    result = run_audit(root, STROKE)
    split = grouped_split(result, 0.25, seed=3)
    side = {}
    for name, idx in (("train", split.train), ("val", split.val)):
        for i in idx:
            scan = result.records[i].scan
            assert side.setdefault(scan, name) == name, f"{scan} on both sides"
    val_labels = {result.records[i].label for i in split.val}
    assert val_labels == {"Normal", "Stroke"}  # stratified: both classes validated


def test_stroke_scan_id_parsing():
    assert stroke_scan_id(Path("58 (34).jpg")) == "scan-58"
    assert stroke_scan_id(Path("100(2).jpg")) == "scan-100"
    assert stroke_scan_id(Path("no-scan.jpg")) is None


def test_training_loader_and_gateway_preprocess_give_identical_bytes(shared_samples):
    """The same file through training's loader and through the gateway's function: same bytes."""
    files = sorted(p for p in shared_samples.iterdir() if p.suffix in (".jpg", ".png"))
    task = get_task("brain-tumor")
    root = shared_samples.parent  # class folder = 'samples' for this check
    records = [r for r in discover(root, task) if r.path.parent == shared_samples]
    assert len(records) == len(files)
    pixels = load_pixels(records, 128, 1, cache=False)
    for record, arr in zip(records, pixels, strict=True):
        served = load_model_input(record.path.read_bytes(), 128, 1)
        assert served.dtype == np.uint8 and served.shape == (128, 128, 1)
        assert arr.tobytes() == served.tobytes(), record.path.name


def test_spine_base_names_the_slice_an_augmented_copy_is_of():
    from training.tasks import spine_base

    assert spine_base(Path("CSFDV1B10 (18) (3).png")) == "CSFDV1B10 (18)"
    assert spine_base(Path("CSFDV1B10 (18).png")) == "CSFDV1B10 (18)"
    assert spine_base(Path("normal_3.png")) is None


def test_spine_audit_keeps_augmented_copies_in_one_cluster(tmp_path):
    spine = get_task("spine-fracture")
    for split, copy in (("train", 1), ("val", 2)):
        folder = tmp_path / split / "fracture"
        folder.mkdir(parents=True)
        for k in range(3):  # distinct images: only their names tie the copies together
            _scan_image(10 * k + copy).save(folder / f"CSFDV1B{k} (5) ({copy}).png")
    result = run_audit(tmp_path, spine)
    by_base: dict[str, set[int]] = {}
    for record, cluster in zip(result.records, result.cluster_of, strict=True):
        by_base.setdefault(record.path.name.rsplit(" (", 1)[0], set()).add(cluster)
    assert len(by_base) == 3 and all(len(c) == 1 for c in by_base.values())
    assert len(set(result.cluster_of)) == 3
