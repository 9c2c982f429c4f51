"""One task end to end: prepare -> fit -> checkpoint -> calibrate and evaluate -> export the next
version -> report. `training.train` is its CLI; `export_version` is shared with the ensemble."""

from __future__ import annotations

import json
import time
from argparse import Namespace
from pathlib import Path

import numpy as np

from training.cli import dataset_folder
from training.data.prepare import Prepared, prepare
from training.evaluation.latency import measure_latency
from training.evaluation.validation import evaluate, training_info
from training.fit import fit_for, predict_logits
from training.nets.checkpoints import note_report, save_checkpoint
from training.tasks import TaskSpec, get_task


def run(args: Namespace, command: str) -> Path:
    """Train, evaluate, export and report as `args` (training.train's flags) say; returns the
    exported version folder."""
    from training.evaluation.report import write_report

    task = get_task(args.task)
    data = dataset_folder(task, args.data)
    size, epochs = args.size or task.size, args.epochs or task.epochs
    started = time.time()
    p = prepare(task, data, size, args.seed, args.max_per_class)
    print(json.dumps(p.split_summary), flush=True)
    model, history = fit_for(
        task,
        p,
        mil=args.mil,
        arch=args.arch,
        size=size,
        channels=task.channels,
        epochs=epochs,
        seed=args.seed if args.init_seed is None else args.init_seed,
        init_from=args.init_from,
        batch_size=args.batch_size,
        patience=args.patience,
        lr=args.lr,
    )
    checkpoint = save_checkpoint(
        model,
        task.name,
        args.arch,
        size,
        task.channels,
        p.labels,
        args.seed,
        command,
        args.checkpoints_dir,
    )
    metrics, probs = evaluate(p, predict_logits(model, p.x_val, args.flip_tta), task)
    version_dir, report_dir = export_version(model, task, p, size, metrics, args, probs)
    metrics["train_minutes"] = (time.time() - started) / 60
    write_report(report_dir, version_dir, task, p, metrics, probs, history, command)
    note_report(checkpoint, report_dir)
    print(f"exported {version_dir}; report {report_dir}", flush=True)
    return version_dir


def export_version(
    model, task: TaskSpec, p: Prepared, size: int, metrics: dict, args: Namespace, probs=None
) -> tuple[Path, Path]:
    """Export `model` as the task's next version under `args.models_root` (labels, threshold
    and temperature from `metrics`, info_json from `training_info`, `probs` being the calibrated
    validation probabilities), add its latency and info to `metrics`; returns the version folder
    and the report folder that belongs to it."""
    from training.export.savedmodel import export_model, next_version

    score_model, ood_info = _ood(task, p, size)
    metrics["info_json"] = training_info(task, p, metrics, probs, args.seed, ood_info)
    version = next_version(args.models_root / task.name)
    version_dir = export_model(
        model,
        args.models_root,
        task.name,
        p.labels,
        size,
        task.channels,
        threshold=metrics.get("threshold", -1.0),
        positive_index=metrics.get("positive_index", -1),
        temperature=metrics["temperature"],
        version=version,
        flip_tta=args.flip_tta,
        info=metrics["info_json"],
        ood=score_model,
    )
    metrics["latency_batch1"] = measure_latency(version_dir, size, task.channels)
    return version_dir, args.reports_root / task.name / f"v{version}"


def _ood(task: TaskSpec, p: Prepared, size: int):
    """(score model, info_json "ood") fitted on the training images, for tasks that declare a
    domain; (None, None) otherwise."""
    if task.domain is None:
        return None, None
    from training.nets.ood import ood_for

    groups = p.groups_train if p.groups_train is not None else np.arange(len(p.x_train))
    return ood_for(p.x_train, groups, size, task.channels)
