"""Repeated grouped hold-out (`python -m training.crossval` without `--folds`): train on several
seeded grouped splits, best epoch on each split's validation side (optimistic), one report row per
split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training.data.prepare import prepare
from training.evaluation.report import markdown_table
from training.evaluation.validation import evaluate
from training.fit import fit_for, predict_logits


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
