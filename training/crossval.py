"""Repeated leakage-free hold-out: train on several seeded grouped splits, report the spread.

Small datasets (brain-stroke: 66 scans, about 14 in a validation split) give one split's AUC a
confidence interval wider than the differences between candidates; this puts a number on that.
`python -m training.crossval --task brain-stroke --arch plain_cnn_mirror --repeats 5`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training.audit import run_audit
from training.data import DEFAULT_DATA_ROOT
from training.tasks import get_task
from training.train import REPORTS_ROOT, evaluate, fit_for, predict_logits, prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--arch", default="plain_cnn")
    parser.add_argument("--size", type=int)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--init-from", type=Path)
    parser.add_argument(
        "--mil", action="store_true", help="multiple-instance loss, training/mil.py"
    )
    args = parser.parse_args()
    task = get_task(args.task)
    size = args.size or task.size
    data = args.data or DEFAULT_DATA_ROOT / task.dataset_dir
    audit = run_audit(data, task)  # once: only the split changes between repeats
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
    write(task.name, args, size, rows)


def write(task: str, args, size: int, rows: list[dict]) -> None:
    def stat(key: str) -> str:
        vals = np.array([r[key] for r in rows if key in r])
        return f"{vals.mean():.3f} ± {vals.std(ddof=1):.3f}" if len(vals) > 1 else "n/a"

    table = "".join(
        f"| {r['seed']} | {r['val_images']} | {r.get('scans', '-')} | {r['slice_auc']:.3f} | "
        f"{r.get('scan_auc', float('nan')):.3f} |\n"
        for r in rows
    )
    init = f" --init-from {args.init_from}" if args.init_from else ""
    mil = " --mil" if args.mil else ""
    out = REPORTS_ROOT / task / f"crossval-{args.arch}-{size}{'-mil' if args.mil else ''}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"# Repeated grouped hold-out: {task}, {args.arch}, {size} px{mil}\n\n"
        f"Command: `python -m training.crossval --task {task} --arch {args.arch} --size {size} "
        f"--epochs {args.epochs} --repeats {args.repeats}{init}{mil}`\n\n"
        f"Each row: a different seeded, scan-grouped, stratified split; {args.epochs} epochs, "
        "the best epoch chosen on that split's validation data (optimistic), no export.\n\n"
        "| seed | val images | val scans | slice AUC | scan AUC |\n|---|---|---|---|---|\n"
        f"{table}\nMean ± sd: slice AUC {stat('slice_auc')}, scan AUC {stat('scan_auc')}.\n"
    )
    print(out)


if __name__ == "__main__":
    main()
