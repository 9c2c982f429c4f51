"""Find labelled images in a dataset folder and load them through the shared preprocessing."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ct_contract.preprocess import load_model_input
from training.cli import CACHE_DIR, TrainingError
from training.tasks import TaskSpec

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"}
SPLIT_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing"}


@dataclass(frozen=True)
class Record:
    path: Path
    label: str
    source_split: str | None  # the split folder the file came from, if any
    scan: str | None  # scan id from the file name, where the dataset has one


def discover(root: Path, task: TaskSpec) -> list[Record]:
    """Every image under `root` whose parent folder is its class (maybe below a split folder)."""
    root = Path(root)
    if not root.is_dir():
        raise TrainingError(f"dataset folder {root} does not exist")
    records = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        rel = path.relative_to(root).parts
        if len(rel) < 2:
            continue
        split = next((p.lower() for p in rel[:-2] if p.lower() in SPLIT_NAMES), None)
        scan = task.scan_id(path) if task.scan_id else None
        records.append(Record(path, rel[-2], split, scan))
    if not records:
        raise TrainingError(f"no images in class folders under {root}")
    return records


def _cache_key(records: list[Record], size: int, channels: int) -> str:
    h = hashlib.sha256(f"{size}:{channels}".encode())
    for r in records:
        stat = r.path.stat()
        h.update(f"{r.path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_pixels(records: list[Record], size: int, channels: int, cache: bool = True) -> np.ndarray:
    """uint8 [N, size, size, channels] via ct_contract.preprocess, as the gateway sees them."""
    cache_file = CACHE_DIR / f"pixels-{_cache_key(records, size, channels)}.npy"
    if cache and cache_file.exists():
        return np.load(cache_file)

    def one(record: Record) -> np.ndarray:
        return load_model_input(record.path.read_bytes(), size, channels)

    with ThreadPoolExecutor(max_workers=2) as pool:
        arrays = list(pool.map(one, records))
    pixels = np.stack(arrays) if arrays else np.zeros((0, size, size, channels), np.uint8)
    if cache:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache_file, pixels)
    return pixels
