"""Leakage-free cross-validation: report the spread of a recipe over patients.

Two modes. Repeated hold-out (default): train on several seeded grouped splits, best epoch on
each split's validation side (optimistic).
`python -m training.crossval --task brain-stroke --arch plain_cnn_mirror --repeats 5`

Repeated grouped k-fold (`--folds K`): per repeat, the scans are dealt into K stratified folds
(training/split.py grouped_kfold; every scan in exactly one validation fold); each fold's model
trains for exactly `--epochs` epochs without looking at its validation fold, and scores it.
Reported: per-fold and pooled out-of-fold slice and scan AUC, and sensitivity/specificity at a
scan threshold chosen for each fold on the out-of-fold scores of the *other* folds of the
repeat (that fold's training scans), never on the fold it is applied to.
`python -m training.crossval --task brain-stroke --arch plain_cnn_mirror --size 96 --epochs 8 \
    --folds 5 --repeats 2`
The k-fold run is training/kfold.py, its report training/kfold_report.py, its export of the
all-scans model training/kfold_export.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from training import cli
from training.audit import run_audit
from training.fit import fit_for, predict_logits
from training.paths import KFOLD_OUT, dataset_folder
from training.prepare import prepare
from training.tables import markdown_table
from training.tasks import get_task
from training.validation import evaluate

RECIPE = ("--arch", "--size", "--epochs", "--init-from", "--mil", "--flip-tta", "--lr")


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(
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
    from training.kfold import kfold

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


def holdout(task, data: Path, size: int, audit, args: argparse.Namespace) -> Path:
    """Repeated grouped hold-out: one row per seeded split; writes the markdown report."""
    rows = []
    for seed in range(1, args.repeats + 1):
        p = prepare(task, data, size, seed, None, audit)
        # patience = epochs: no early stop, the best epoch's weights are kept
        model, _ = fit_for(
            task,
            p,
            mil=args.mil,
            arch=args.arch,
            size=size,
            channels=task.channels,
            epochs=args.epochs,
            seed=seed,
            init_from=args.init_from,
            batch_size=32,
            patience=args.epochs,
        )
        metrics, _ = evaluate(p, predict_logits(model, p.x_val, False), task)
        row = {"seed": seed, "val_images": len(p.y_val), "slice_auc": metrics["auc"]}
        if "scan_level" in metrics:
            row.update(scans=metrics["scan_level"]["scans"], scan_auc=metrics["scan_level"]["auc"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    return write(task.name, args, size, rows)


def write(task: str, args: argparse.Namespace, size: int, rows: list[dict]) -> Path:
    """The hold-out report: a row per split, mean ± sd of slice and scan AUC."""

    def stat(key: str) -> str:
        vals = np.array([r[key] for r in rows if key in r])
        return f"{vals.mean():.3f} ± {vals.std(ddof=1):.3f}" if len(vals) > 1 else "n/a"

    table = markdown_table(
        ["seed", "val images", "val scans", "slice AUC", "scan AUC"],
        [
            [
                r["seed"],
                r["val_images"],
                r.get("scans", "-"),
                f"{r['slice_auc']:.3f}",
                f"{r.get('scan_auc', float('nan')):.3f}",
            ]
            for r in rows
        ],
    )
    init = f" --init-from {args.init_from}" if args.init_from else ""
    mil = " --mil" if args.mil else ""
    out = args.reports_root / task / f"crossval-{args.arch}-{size}{'-mil' if args.mil else ''}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"# Repeated grouped hold-out: {task}, {args.arch}, {size} px{mil}\n\n"
        f"Command: `python -m training.crossval --task {task} --arch {args.arch} --size {size} "
        f"--epochs {args.epochs} --repeats {args.repeats}{init}{mil}`\n\n"
        f"Each row: a different seeded, scan-grouped, stratified split; {args.epochs} epochs, "
        "the best epoch chosen on that split's validation data (optimistic), no export.\n\n"
        f"{table}\nMean ± sd: slice AUC {stat('slice_auc')}, scan AUC {stat('scan_auc')}.\n"
    )
    print(out)
    return out


if __name__ == "__main__":
    main()
