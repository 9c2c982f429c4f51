"""Leakage-free cross-validation: report the spread of a recipe over patients.

Two modes. Repeated hold-out (default): train on several seeded grouped splits, best epoch on
each split's validation side (optimistic).
`python -m training.crossval --task brain-stroke --arch plain_cnn_mirror --repeats 5`

Repeated grouped k-fold (`--folds K`): per repeat, the scans are dealt into K stratified folds
(training/data/split.py grouped_kfold; every scan in exactly one validation fold); each fold's model
trains for exactly `--epochs` epochs without looking at its validation fold, and scores it.
Reported: per-fold and pooled out-of-fold slice and scan AUC, and sensitivity/specificity at a
scan threshold chosen for each fold on the out-of-fold scores of the *other* folds of the
repeat (that fold's training scans), never on the fold it is applied to.
`python -m training.crossval --task brain-stroke --arch plain_cnn_mirror --size 96 --epochs 8 \
    --folds 5 --repeats 2`
The hold-out run is training/crossval/holdout.py; the k-fold run, its report and its export of
the all-scans model training/crossval/kfold.py; the frozen-feature recipe under the same folds
training/crossval/frozen.py (`python -m training.crossval.frozen`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training import cli
from training.cli import KFOLD_OUT, dataset_folder
from training.data.audit import run_audit
from training.tasks import get_task

RECIPE = ("--arch", "--size", "--epochs", "--init-from", "--mil", "--flip-tta", "--lr")


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(
        prog="python -m training.crossval",  # run as a package, argv[0] is its __main__.py
        description=__doc__,
        parents=[cli.parent("--task", "--data", *RECIPE, "--models-root", "--reports-root")],
    )
    out.set_defaults(epochs=15)
    out.add_argument("--repeats", type=int, default=5)
    out.add_argument(
        "--folds", type=int, help="repeated grouped k-fold with this many folds per repeat"
    )
    out.add_argument(
        "--save-models", type=Path, help="k-fold: keep each fold's weights in this folder"
    )
    out.add_argument("--tag", default="", help="k-fold: suffix of the report's file name")
    out.add_argument(
        "--export",
        action="store_true",
        help="k-fold: then train on all scans for the same epochs and export the next version, "
        "its info_json validation being the k-fold figures",
    )
    out.add_argument(
        "--folds-from",
        type=Path,
        help="k-fold: deal the folds from the audit of this folder (the same file names, e.g. "
        "brain-stroke-ct for brain-stroke-ct-650), so two recipes are compared on the same folds",
    )
    out.add_argument(
        "--scores-dir", type=Path, default=KFOLD_OUT, help="k-fold: out-of-fold scores (JSON)"
    )
    out.add_argument(
        "--neighbours",
        action="store_true",
        help="k-fold, 2.5-D: each slice with the slices above and below it as 3 channels",
    )
    return out


@cli.exits_on_error
def main(argv: list[str] | None = None) -> None:
    from training.crossval.holdout import holdout
    from training.crossval.kfold import kfold

    args = parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    task = get_task(args.task)
    size = args.size or task.size
    data = dataset_folder(task, args.data)
    audit = run_audit(data, task)  # once: only the split changes between repeats
    if args.folds:
        kfold(task, data, size, audit, args)
    else:
        holdout(task, data, size, audit, args)
