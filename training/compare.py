"""Architecture comparison: train each candidate briefly on the same split, measure validation
accuracy/AUC and CPU latency at batch 1, write the table next to the task's reports.

`python -m training.compare --task brain-tumor --epochs 4`
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from training import evaluate as ev
from training.data import DEFAULT_DATA_ROOT
from training.models import ARCHITECTURES
from training.tasks import get_task
from training.train import REPORTS_ROOT, fit, predict_logits, prepare


def keras_latency(model, size: int, channels: int, runs: int = 100) -> float:
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False))  # noqa: E731  (traced once)
    x = tf.zeros([1, size, size, channels])
    for _ in range(10):
        fn(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--size", type=int)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--max-per-class", type=int)
    args = parser.parse_args()
    task = get_task(args.task)
    size = args.size or task.size
    p = prepare(
        task, args.data or DEFAULT_DATA_ROOT / task.dataset_dir, size, args.seed, args.max_per_class
    )
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
                "latency_ms_batch1": keras_latency(model, size, task.channels),
                "train_minutes": (time.time() - started) / 60,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    out = REPORTS_ROOT / task.name / "architecture_comparison.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    table = "".join(
        f"| {r['arch']} | {r['params']:,} | {r['val_accuracy']:.4f} | {r['val_auc']:.4f} | "
        f"{r['latency_ms_batch1']:.2f} | {r['train_minutes']:.1f} |\n"
        for r in rows
    )
    out.write_text(
        f"# Architecture comparison: {task.name}\n\n{args.epochs} epochs each, {size} px, same "
        f"leakage-free split and seed, uncalibrated; latency is the Keras forward pass at batch 1 "
        f"on this machine's CPU (median of 100).\n\nCommand: `python -m training.compare "
        f"--task {task.name} --epochs {args.epochs} --size {size}"
        f"{f' --max-per-class {args.max_per_class}' if args.max_per_class else ''}`\n\n"
        "| architecture | parameters | val accuracy | val AUC | latency ms | train min |\n"
        f"|---|---|---|---|---|---|\n{table}"
    )
    print(out)


if __name__ == "__main__":
    main()
