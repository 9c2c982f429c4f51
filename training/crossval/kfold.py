"""Repeated grouped k-fold of a two-class scan task (`python -m training.crossval --folds K`):
each fold's model trains a fixed number of epochs and scores its validation fold; the
out-of-fold scores are saved as JSON and reported (training/kfold_report.py)."""

from __future__ import annotations

import json
import shlex
import time
from argparse import Namespace
from pathlib import Path

import numpy as np

from training.audit import run_audit
from training.data import load_pixels
from training.errors import TrainingError
from training.fit import fit_for, predict_logits
from training.kfold_report import fold_row, write_kfold
from training.prepare import from_arrays, slice_number
from training.split import grouped_kfold


def kfold(task, data: Path, size: int, audit, args: Namespace) -> None:
    """Repeated grouped k-fold of a two-class scan task; writes the markdown report (and with
    --export trains and exports the all-scans model)."""
    if task.positive_label is None or not task.grouped_by_scan:
        raise TrainingError("--folds: a two-class task grouped by scan (brain-stroke)")
    if args.export and args.neighbours:
        raise TrainingError("--export: a 2.5-D model needs slice stacks the gateway does not send")
    records = audit.records
    labels = sorted({r.label for r in records})
    x_all = load_pixels(records, size, task.channels)
    if args.neighbours:
        x_all = with_neighbours(x_all, records)
    y_all = np.array([labels.index(r.label) for r in records])
    scans_all = np.array([r.scan for r in records])
    name = run_name(args, size)
    args.scores_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m training.crossval " + " ".join(shlex.quote(a) for a in args.argv)
    result = {"command": command, "folds": [], "oof": {}}
    fold_audit = _fold_audit(task, data, audit, args.folds_from)
    arrays = (records, labels, x_all, y_all, scans_all)
    for repeat in range(1, args.repeats + 1):
        splits = grouped_kfold(fold_audit, args.folds, seed=repeat)
        scores = np.full(len(records), np.nan)
        fold_of = np.full(len(records), -1)
        for k, split in enumerate(splits):
            row = _fold(task, size, args, arrays, split, (repeat, k, name), scores)
            fold_of[split.val] = k
            result["folds"].append(row)
            print(json.dumps(row), flush=True)
            result["oof"][str(repeat)] = {"scores": scores.tolist(), "fold": fold_of.tolist()}
            (args.scores_dir / f"{name}.json").write_text(json.dumps(result))
    pos = labels.index(task.positive_label)
    result["labels_positive"] = (y_all == pos).tolist()
    result["scans"] = scans_all.tolist()
    (args.scores_dir / f"{name}.json").write_text(json.dumps(result))
    cv_report = write_kfold(task.name, name, args, size, result, y_all == pos, scans_all)
    if args.export:
        from training.kfold_export import export_all_scans

        export_all_scans(task, size, args, result, x_all, y_all, scans_all, records, cv_report)


def run_name(args: Namespace, size: int) -> str:
    """The report's and the scores' file name: recipe, size, MIL, 2.5-D, folds x repeats, tag."""
    name = f"kfold-{args.arch.replace('@', '-')}-{size}{'-mil' if args.mil else ''}"
    name += "-2.5d" if args.neighbours else ""
    return name + f"-{args.folds}x{args.repeats}{'-' + args.tag if args.tag else ''}"


def _fold_audit(task, data: Path, audit, folds_from: Path | None):
    """The audit the folds are dealt from: `audit`, or that of --folds-from (same file names)."""
    if not folds_from:
        return audit
    fold_audit = run_audit(folds_from, task)
    ours = [r.path.relative_to(data) for r in audit.records]
    theirs = [r.path.relative_to(folds_from) for r in fold_audit.records]
    if ours != theirs:
        raise TrainingError(f"--folds-from {folds_from}: not the same files as {data}")
    return fold_audit


def _fold(task, size: int, args: Namespace, arrays, split, where, scores: np.ndarray) -> dict:
    """Train one fold's model, write its validation scores into `scores`; returns its row."""
    records, labels, x_all, y_all, scans_all = arrays
    repeat, k, name = where
    started = time.time()
    p = from_arrays(task, records, labels, x_all, y_all, scans_all, split.train, split.val)
    model, _ = fit_for(
        task,
        p,
        mil=args.mil,
        arch=args.arch,
        size=size,
        channels=x_all.shape[-1],
        epochs=args.epochs,
        seed=1000 * repeat + k,
        init_from=args.init_from,
        batch_size=32,
        patience=args.epochs,
        lr=args.lr,
        keep_best=False,
    )
    pos = labels.index(task.positive_label)
    logits = predict_logits(model, p.x_val, args.flip_tta)
    z = logits[:, pos] - logits[:, 1 - pos]
    va = np.asarray(split.val, dtype=int)
    scores[va] = 1.0 / (1.0 + np.exp(-z))  # softmax probability of the positive class
    if args.save_models:
        args.save_models.mkdir(parents=True, exist_ok=True)
        model.save_weights(args.save_models / f"{name}-r{repeat}-f{k}.weights.h5")
    row = fold_row(scores[va], y_all[va] == pos, scans_all[va])
    row.update(repeat=repeat, fold=k, minutes=(time.time() - started) / 60)
    return row


def neighbour_index(records) -> np.ndarray:
    """[N, 3] record indices (slice below, the slice, slice above) in the scan's slice order
    (`<scan> (<slice>).jpg`); a scan's first and last slice repeat themselves."""
    out = np.repeat(np.arange(len(records))[:, None], 3, axis=1)
    by_scan: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_scan.setdefault(r.scan, []).append(i)
    for idx in by_scan.values():
        order = sorted(idx, key=lambda i: slice_number(records[i].path.name))
        for k, i in enumerate(order):
            out[i, 0] = order[max(k - 1, 0)]
            out[i, 2] = order[min(k + 1, len(order) - 1)]
    return out


def with_neighbours(x: np.ndarray, records) -> np.ndarray:
    """2.5-D input: single-channel slices [N, S, S, 1] -> [N, S, S, 3] (below, slice, above)."""
    return np.concatenate([x[neighbour_index(records)[:, j]] for j in range(3)], axis=-1)
