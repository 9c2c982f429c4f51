"""Architecture comparison: train each candidate briefly on the same split, measure validation
accuracy/AUC and CPU latency at batch 1, write the table next to the task's reports.

`python -m training.compare --task brain-tumor --epochs 4`
"""

from __future__ import annotations

import argparse
import json
import time

from training import cli
from training.cli import dataset_folder
from training.data.prepare import prepare
from training.evaluation import metrics as ev
from training.evaluation.latency import keras_latency
from training.evaluation.report import markdown_table
from training.fit import fit, predict_logits
from training.nets.architectures import ARCHITECTURES
from training.tasks import get_task

FLAGS = ("--task", "--data", "--size", "--epochs", "--seed", "--max-per-class", "--reports-root")


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(description=__doc__, parents=[cli.parent(*FLAGS)])
    out.set_defaults(epochs=4)
    return out


@cli.exits_on_error
def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    task = get_task(args.task)
    size = args.size or task.size
    p = prepare(task, dataset_folder(task, args.data), size, args.seed, args.max_per_class)
    rows = []
    for arch in ARCHITECTURES:
        started = time.time()
        # patience = epochs: no early stop, the best epoch's weights are kept
        model, _ = fit(
            p,
            arch,
            size,
            task.channels,
            args.epochs,
            args.seed,
            init_from=None,
            batch_size=32,
            patience=args.epochs,
        )
        probs = ev.calibrated(predict_logits(model, p.x_val, False), 1.0)
        rows.append(
            {
                "arch": arch,
                "params": int(model.count_params()),
                "val_accuracy": float((probs.argmax(1) == p.y_val).mean()),
                "val_auc": ev.auc(p.y_val, probs),
                "latency_ms_batch1": keras_latency(model, size, task.channels)["median_ms"],
                "train_minutes": (time.time() - started) / 60,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    write(task.name, args, size, rows)


def write(task: str, args: argparse.Namespace, size: int, rows: list[dict]):
    """The comparison table `<reports root>/<task>/architecture_comparison.md`."""
    out = args.reports_root / task / "architecture_comparison.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    table = markdown_table(
        ["architecture", "parameters", "val accuracy", "val AUC", "latency ms", "train min"],
        [
            [r["arch"], f"{r['params']:,}", f"{r['val_accuracy']:.4f}", f"{r['val_auc']:.4f}"]
            + [f"{r['latency_ms_batch1']:.2f}", f"{r['train_minutes']:.1f}"]
            for r in rows
        ],
    )
    out.write_text(
        f"# Architecture comparison: {task}\n\n{args.epochs} epochs each, {size} px, same "
        f"leakage-free split and seed, uncalibrated; latency is the Keras forward pass at batch 1 "
        f"on this machine's CPU (median of 100).\n\nCommand: `python -m training.compare "
        f"--task {task} --epochs {args.epochs} --size {size}"
        f"{f' --max-per-class {args.max_per_class}' if args.max_per_class else ''}`\n\n{table}"
    )
    print(out)
    return out


if __name__ == "__main__":
    main()
