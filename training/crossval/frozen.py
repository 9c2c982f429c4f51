"""Repeated grouped k-fold of frozen ImageNet features + a logistic head (brain-stroke), under the
same folds, scan rule, threshold rule and report as `training.crossval --folds` (training/kfold.py),
so recipes compare paired, fold by fold.

    python -m training.frozen_cv --task brain-stroke --size 256 --variant lite0 \
        --data ../shared/datasets/brain-stroke-ct-650 --folds 5 --repeats 2 \
        --folds-from ../shared/datasets/brain-stroke-ct

Features are extracted once for all slices (training/frozen.py, cached under build/cache); each
fold standardises them on its training slices and fits an L2 logistic regression (class-balanced,
C fixed before looking at any fold) that scores its validation fold.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from argparse import Namespace
from pathlib import Path

import numpy as np

from training.audit import run_audit
from training.data import load_pixels
from training.errors import TrainingError
from training.frozen import FeatureSpec, extract, feature_net
from training.kfold import _fold_audit
from training.kfold_report import fold_row, write_kfold
from training.paths import MODELS_ROOT, REPORTS_ROOT, dataset_folder
from training.split import grouped_kfold
from training.tasks import get_task

DEFAULT_C = 0.01


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="brain-stroke")
    p.add_argument("--data", type=Path)
    p.add_argument("--size", type=int, default=256, help="model input size (the crop's source)")
    p.add_argument("--variant", default="lite0")
    p.add_argument("--no-crop", action="store_true")
    p.add_argument("--features", choices=("pooled", "pooled+mirror"), default="pooled+mirror")
    p.add_argument("--c", type=float, default=DEFAULT_C, help="inverse L2 strength")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--folds-from", type=Path)
    p.add_argument("--scores-dir", type=Path, default=Path("build/crossval"))
    p.add_argument("--reports-root", type=Path, default=REPORTS_ROOT)
    p.add_argument("--models-root", type=Path, default=MODELS_ROOT)
    p.add_argument("--export", action="store_true", help="fit on every scan, export next version")
    p.add_argument("--tag", default="")
    return p


def fit_head(x: np.ndarray, y: np.ndarray, c: float):
    """Standardise on `x`, then class-balanced L2 logistic regression; returns the pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    head = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    return make_pipeline(StandardScaler(), head).fit(x, y)


def features_for(task, data: Path, size: int, spec: FeatureSpec):
    """(audit, labels, pixels, features [N, D], labels as indices [N], scans [N])."""
    audit = run_audit(data, task)
    records = audit.records
    labels = sorted({r.label for r in records})
    pixels = load_pixels(records, size, task.channels)
    net = feature_net(spec, size, task.channels)
    feats = extract(net, pixels, cache_key=f"{task.name}-{spec.name}-{size}")
    y = np.array([labels.index(r.label) for r in records])
    return audit, labels, pixels, feats, y, np.array([r.scan for r in records])


def select(features: np.ndarray, which: str) -> np.ndarray:
    """'pooled': the first half of pooled+mirror features; else all."""
    return features[:, : features.shape[1] // 2] if which == "pooled" else features


def run(args: Namespace) -> Path:
    task = get_task(args.task)
    if task.positive_label is None or not task.grouped_by_scan:
        raise TrainingError("frozen_cv: a two-class task grouped by scan (brain-stroke)")
    data = dataset_folder(task, args.data)
    spec = FeatureSpec(args.variant, crop=not args.no_crop, mirror=True)
    audit, labels, pixels, feats, y_all, scans_all = features_for(task, data, args.size, spec)
    x_all = select(feats, args.features)
    pos = labels.index(task.positive_label)
    name = f"kfold-frozen-{spec.variant}{'' if args.no_crop else '-crop'}-{args.features}"
    name += f"-c{args.c:g}-{args.size}-{args.folds}x{args.repeats}"
    name += f"-{args.tag}" if args.tag else ""
    command = "python -m training.frozen_cv " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = {"command": command, "folds": [], "oof": {}}
    fold_audit = _fold_audit(task, data, audit, args.folds_from)
    for repeat in range(1, args.repeats + 1):
        scores, fold_of = np.full(len(y_all), np.nan), np.full(len(y_all), -1)
        for k, split in enumerate(grouped_kfold(fold_audit, args.folds, seed=repeat)):
            started = time.time()
            tr, va = np.asarray(split.train, int), np.asarray(split.val, int)
            head = fit_head(x_all[tr], y_all[tr] == pos, args.c)
            scores[va] = head.predict_proba(x_all[va])[:, 1]
            fold_of[va] = k
            row = fold_row(scores[va], y_all[va] == pos, scans_all[va])
            row.update(repeat=repeat, fold=k, minutes=(time.time() - started) / 60)
            result["folds"].append(row)
            print(json.dumps(row), flush=True)
        result["oof"][str(repeat)] = {"scores": scores.tolist(), "fold": fold_of.tolist()}
    result["labels_positive"] = (y_all == pos).tolist()
    result["scans"] = scans_all.tolist()
    args.scores_dir.mkdir(parents=True, exist_ok=True)
    (args.scores_dir / f"{name}.json").write_text(json.dumps(result))
    report_args = Namespace(**vars(args), arch=f"frozen {spec.name} + logistic (C={args.c:g})")
    report_args.epochs = "0 (frozen backbone; only a logistic head is fitted)"
    report_args.mil, report_args.neighbours = False, False
    report = write_kfold(task.name, name, report_args, args.size, result, y_all == pos, scans_all)
    if args.export:
        from training.frozen_export import export

        args.data = data
        head = fit_head(x_all, y_all == pos, args.c)
        arrays = (labels, pixels, y_all, scans_all, audit)
        export(
            task,
            args,
            FeatureSpec(spec.variant, spec.crop, args.features != "pooled"),
            arrays,
            result,
            report,
            head,
        )
    return report


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        print(run(args))
    except TrainingError as e:
        sys.exit(f"frozen_cv: {e}")


if __name__ == "__main__":
    main()
