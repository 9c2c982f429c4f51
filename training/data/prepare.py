"""Data preparation: audit -> leak-free split -> pixels, the arrays fitting and evaluation use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.data.audit import AuditResult, run_audit, to_markdown
from training.data.images import load_pixels
from training.data.split import grouped_split, leakage_groups
from training.tasks import TaskSpec

EDGE_SLICE_WEIGHT = 0.4  # stroke scans: weight of skull-base/vertex slices (label may not show)
EDGE_FRACTION = 0.2  # ... the first and last 20% of a scan's slices


@dataclass
class Prepared:
    labels: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    w_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    scans_train: np.ndarray | None
    scans_val: np.ndarray | None
    split_summary: dict = field(default_factory=dict)
    audit_md: str = ""
    split_files: dict = field(default_factory=dict)
    groups_train: np.ndarray | None = None  # leakage group (scan, duplicate cluster) per image


def slice_number(name: str) -> int:
    """'<scan> (<slice>).jpg' -> the slice number (0 when the name carries none)."""
    digits = name.rsplit("(", 1)[-1].split(")")[0]
    return int(digits) if digits.isdigit() else 0


def slice_weights(records, idx, task: TaskSpec) -> np.ndarray:
    """Down-weight edge slices of positive scans: per-scan labels make them noisy positives."""
    weights = np.ones(len(idx), np.float32)
    if not task.grouped_by_scan or task.positive_label is None:
        return weights
    by_scan: dict[str, list[int]] = {}
    for k, i in enumerate(idx):
        by_scan.setdefault(records[i].scan, []).append(k)
    for ks in by_scan.values():
        if records[idx[ks[0]]].label != task.positive_label:
            continue
        order = sorted(ks, key=lambda k: slice_number(records[idx[k]].path.name))
        n_edge = int(EDGE_FRACTION * len(order))
        for k in order[:n_edge] + order[len(order) - n_edge :]:
            weights[k] = EDGE_SLICE_WEIGHT
    return weights


def prepare(
    task: TaskSpec,
    data: Path,
    size: int,
    seed: int,
    max_per_class: int | None,
    audit: AuditResult | None = None,
) -> Prepared:
    """Audit (unless given one of `data`), split with `seed`, load pixels."""
    audit = audit or run_audit(data, task)
    split = grouped_split(audit, task.val_fraction, seed)
    records = audit.records
    labels = sorted({records[i].label for i in split.train + split.val})
    if max_per_class:  # tiny runs (tests): a few images per class, still leakage-free
        split.train = _cap(split.train, records, max_per_class)
        split.val = _cap(split.val, records, max_per_class)
    index = {lab: k for k, lab in enumerate(labels)}
    rel = lambda i: str(records[i].path.relative_to(data))  # noqa: E731
    return Prepared(
        labels=labels,
        x_train=load_pixels([records[i] for i in split.train], size, task.channels),
        y_train=np.array([index[records[i].label] for i in split.train]),
        w_train=slice_weights(records, split.train, task),
        x_val=load_pixels([records[i] for i in split.val], size, task.channels),
        y_val=np.array([index[records[i].label] for i in split.val]),
        scans_train=_scans(records, split.train, task),
        scans_val=_scans(records, split.val, task),
        groups_train=np.array(leakage_groups(audit))[np.asarray(split.train, int)],
        split_summary=split.summary([r.label for r in records]),
        audit_md=to_markdown(audit.findings, data, task.name),
        split_files={
            "train": [rel(i) for i in split.train],
            "val": [rel(i) for i in split.val],
            "dropped": {k: [rel(i) for i in v] for k, v in split.dropped.items()},
        },
    )


def from_arrays(task: TaskSpec, records, labels, x, y, scans, train, val) -> Prepared:
    """A Prepared of already loaded arrays (k-fold: one pixel load, many splits); `train` and
    `val` index records."""
    tr, va = np.asarray(train, dtype=int), np.asarray(val, dtype=int)
    return Prepared(
        labels=labels,
        x_train=x[tr],
        y_train=y[tr],
        w_train=slice_weights(records, list(train), task),
        x_val=x[va],
        y_val=y[va],
        scans_train=scans[tr],
        scans_val=scans[va],
    )


def _scans(records, idx, task: TaskSpec) -> np.ndarray | None:
    return np.array([records[i].scan for i in idx]) if task.grouped_by_scan else None


def _cap(idx, records, n):
    seen: dict[str, int] = {}
    out = []
    for i in idx:
        if seen.get(records[i].label, 0) < n:
            seen[records[i].label] = seen.get(records[i].label, 0) + 1
            out.append(i)
    return out
