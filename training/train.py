"""Train, calibrate, evaluate and export one task: `make train TASK=<task> [DATA=...]`.

audit -> leak-free split -> pixels (ct_contract.preprocess) -> train (augmentation, class weights,
early stopping, fixed seeds) -> temperature scaling -> threshold (two-class tasks) -> report ->
SavedModel export under model-server/models/<task>/<version>/ with model card.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training import evaluate as ev
from training.audit import AuditResult, run_audit, to_markdown
from training.data import DEFAULT_DATA_ROOT, REPO, load_pixels
from training.split import grouped_split
from training.tasks import TaskSpec, get_task

MODELS_ROOT = REPO / "model-server" / "models"
REPORTS_ROOT = REPO / "training" / "reports"
CHECKPOINTS = REPO / "build" / "checkpoints"
EDGE_SLICE_WEIGHT = 0.4  # stroke scans: weight of skull-base/vertex slices (label may not show)
EDGE_FRACTION = 0.2  # ... the first and last 20% of a scan's slices
SCAN_TOP_FRACTION = 0.25  # scan verdict: mean of the top quarter of its slice probabilities


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
    split_summary: dict
    audit_md: str
    split_files: dict


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
        order = sorted(ks, key=lambda k: _slice_number(records[idx[k]].path.name))
        n_edge = int(EDGE_FRACTION * len(order))
        for k in order[:n_edge] + order[len(order) - n_edge :]:
            weights[k] = EDGE_SLICE_WEIGHT
    return weights


def _slice_number(name: str) -> int:
    digits = name.rsplit("(", 1)[-1].split(")")[0]
    return int(digits) if digits.isdigit() else 0


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
    x_train = load_pixels([records[i] for i in split.train], size, task.channels)
    x_val = load_pixels([records[i] for i in split.val], size, task.channels)
    rel = lambda i: str(records[i].path.relative_to(data))  # noqa: E731
    return Prepared(
        labels=labels,
        x_train=x_train,
        y_train=np.array([index[records[i].label] for i in split.train]),
        w_train=slice_weights(records, split.train, task),
        x_val=x_val,
        y_val=np.array([index[records[i].label] for i in split.val]),
        scans_train=_scans(records, split.train, task),
        scans_val=_scans(records, split.val, task),
        split_summary=split.summary([r.label for r in records]),
        audit_md=to_markdown(audit.findings, data, task.name),
        split_files={
            "train": [rel(i) for i in split.train],
            "val": [rel(i) for i in split.val],
            "dropped": {k: [rel(i) for i in v] for k, v in split.dropped.items()},
        },
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


def fit(
    p: Prepared,
    arch: str,
    size: int,
    channels: int,
    epochs: int,
    seed: int,
    init_from: Path | None,
    batch_size: int,
    patience: int,
    lr: float = 2e-3,
    keep_best: bool = True,
):
    """`keep_best`: early stopping on the validation side, its best epoch's weights kept; False:
    exactly `epochs` epochs, the validation side is never looked at (k-fold cross-validation)."""
    import keras
    import tensorflow as tf

    from training.models import augmenter, build

    keras.utils.set_random_seed(seed)
    model = build(arch, size, channels, len(p.labels))
    if init_from:
        transfer_backbone(model, init_from)
    counts = np.bincount(p.y_train, minlength=len(p.labels)).astype(np.float64)
    class_w = (counts.sum() / (len(counts) * np.maximum(counts, 1)))[p.y_train]
    weights = (p.w_train * class_w).astype(np.float32)
    aug = augmenter(seed)
    binary = len(p.labels) == 2

    def to_train(x, y, w):
        x = aug(tf.cast(x, tf.float32) / 255.0, training=True)
        return tf.clip_by_value(x, 0.0, 1.0), tf.one_hot(y, len(p.labels)), w

    train_ds = (
        tf.data.Dataset.from_tensor_slices((p.x_train, p.y_train, weights))
        .shuffle(len(p.y_train), seed=seed)
        .batch(batch_size)
        .map(to_train, num_parallel_calls=2)
        .prefetch(2)
    )
    val_ds = tf.data.Dataset.from_tensor_slices(
        (tf.cast(p.x_val, tf.float32) / 255.0, tf.one_hot(p.y_val, len(p.labels)))
    ).batch(64)
    steps = max(1, epochs * int(np.ceil(len(p.y_train) / batch_size)))
    model.compile(
        optimizer=keras.optimizers.AdamW(
            keras.optimizers.schedules.CosineDecay(lr, steps), weight_decay=1e-4
        ),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.05),
        metrics=[
            "accuracy",
            keras.metrics.AUC(name="auc", from_logits=True, multi_label=not binary),
        ],
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_auc" if binary else "val_loss",
        mode="max" if binary else "min",
        patience=patience,
        restore_best_weights=True,
    )
    history = model.fit(
        train_ds,
        validation_data=val_ds if keep_best else None,
        epochs=epochs,
        callbacks=[stop] if keep_best else [],
        verbose=2,
    )
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}


def fit_for(task: TaskSpec, p: Prepared, *, mil: bool, **kwargs):
    """`fit`, or multiple-instance training (training/mil.py) for tasks labelled per scan."""
    if not mil:
        return fit(p, **kwargs)
    from training.mil import fit_mil

    if task.positive_label is None or not task.grouped_by_scan:
        raise SystemExit(f"--mil needs a two-class task grouped by scan; {task.name} is not")
    return fit_mil(p, pos=p.labels.index(task.positive_label), **kwargs)


def transfer_backbone(model, checkpoint: Path) -> None:
    """Initialise layers from one of the project's own checkpoints: weighted layers are paired in
    order and copied where their shapes match (the classifier and a changed stem are skipped)."""
    from training.models import build

    meta = json.loads(checkpoint.with_suffix(".json").read_text())
    source = build(meta["arch"], meta["size"], meta["channels"], meta["n_classes"])
    source.load_weights(checkpoint)
    src_layers = [layer for layer in source.layers if layer.weights]
    dst_layers = [layer for layer in model.layers if layer.weights]
    copied = 0
    for dst, src in zip(dst_layers, src_layers, strict=False):
        shapes = [tuple(w.shape) for w in dst.get_weights()]
        if shapes == [tuple(w.shape) for w in src.get_weights()]:
            dst.set_weights(src.get_weights())
            copied += 1
    print(f"initialised {copied}/{len(dst_layers)} weighted layers from {checkpoint}", flush=True)


def save_checkpoint(
    model,
    task: str,
    arch: str,
    size: int,
    channels: int,
    labels: list[str],
    seed: int,
    command: str = "",
    folder: Path = CHECKPOINTS,
) -> Path:
    """Weights plus what is needed to rebuild the model and re-create its split (the seed)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{task}-{arch}-{size}.weights.h5"
    model.save_weights(path)
    meta = {
        "arch": arch,
        "size": size,
        "channels": channels,
        "n_classes": len(labels),
        "labels": labels,
        "split_seed": seed,
        "command": command,
    }
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def predict_logits(model, x: np.ndarray, flip_tta: bool) -> np.ndarray:
    xf = x.astype(np.float32) / 255.0
    logits = model.predict(xf, batch_size=64, verbose=0)
    if flip_tta:
        logits = (logits + model.predict(xf[:, :, ::-1], batch_size=64, verbose=0)) / 2
    return logits


def measure_latency(
    version_dir: Path, size: int, channels: int, runs: int = 100, signature: str = "serving_default"
) -> dict:
    """A signature of the exported SavedModel at batch 1 on this CPU (median and p95, ms)."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(version_dir)).signatures[signature]
    x = tf.constant(np.random.default_rng(0).integers(0, 256, (1, size, size, channels), np.uint8))
    for _ in range(10):
        fn(image=x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(image=x)
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}


def evaluate(p: Prepared, logits: np.ndarray, task: TaskSpec) -> tuple[dict, np.ndarray]:
    """Validation metrics after temperature scaling; also returns the calibrated probabilities."""
    temperature = ev.fit_temperature(logits, p.y_val)
    probs = ev.calibrated(logits, temperature)
    out = {
        "temperature": temperature,
        "ece_before": ev.expected_calibration_error(ev.calibrated(logits, 1.0), p.y_val),
        "ece": ev.expected_calibration_error(probs, p.y_val),
        "auc": ev.auc(p.y_val, probs),
        "auc_ci95": ev.bootstrap_ci(ev.auc, p.y_val, probs, p.scans_val),
        **ev.classification_metrics(p.y_val, probs, p.labels),
    }
    if task.positive_label is not None and len(p.labels) == 2:
        pos = p.labels.index(task.positive_label)
        scores, positive = probs[:, pos], p.y_val == pos
        out["positive_index"] = pos
        out["threshold"] = ev.sensitivity_threshold(scores, positive)
        out["at_threshold"] = ev.binary_at(scores, positive, out["threshold"])
        if p.scans_val is not None:
            out["scan_level"] = scan_level(scores, positive, p.scans_val)
    return out, probs


def scan_verdicts(scores, positive, scans) -> tuple[np.ndarray, np.ndarray]:
    """Per scan: the aggregated score (the served rule) and whether the scan is positive."""
    ids, agg = ev.aggregate_scans(scores, scans, SCAN_TOP_FRACTION)
    return agg, np.array([positive[scans == s][0] for s in ids])


def scan_level(scores, positive, scans) -> dict:
    agg, truth = scan_verdicts(scores, positive, scans)
    threshold = ev.sensitivity_threshold(agg, truth)
    probs2 = np.stack([1 - agg, agg], axis=1)
    return {
        "rule": f"mean of the top {SCAN_TOP_FRACTION:.0%} slice probabilities of the scan",
        "scans": int(len(agg)),
        "auc": float(ev.auc(truth.astype(int), probs2)) if len(set(truth)) == 2 else float("nan"),
        "threshold": threshold,
        "at_threshold": ev.binary_at(agg, truth, threshold),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True)
    parser.add_argument("--data", type=Path, help="default: ../shared/datasets/<task folder>")
    parser.add_argument("--arch", default="plain_cnn")
    parser.add_argument("--size", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1337, help="the split's seed (and training's)")
    parser.add_argument(
        "--init-seed",
        type=int,
        help="seed for weights, augmentation and batch order, if not --seed: ensemble members "
        "trained on one split need different ones",
    )
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay)")
    parser.add_argument("--init-from", type=Path, help="a project checkpoint (build/checkpoints)")
    parser.add_argument(
        "--flip-tta", action="store_true", help="average logits with the mirror image"
    )
    parser.add_argument(
        "--mil", action="store_true", help="multiple-instance loss on scan bags (brain-stroke)"
    )
    parser.add_argument(
        "--max-per-class", type=int, help="tiny runs: cap images per class and side"
    )
    parser.add_argument("--models-root", type=Path, default=MODELS_ROOT)
    parser.add_argument("--reports-root", type=Path, default=REPORTS_ROOT)
    parser.add_argument("--checkpoints-dir", type=Path, default=CHECKPOINTS)
    args = parser.parse_args(argv)
    run(
        args,
        "python -m training.train " + recorded_command(argv if argv is not None else sys.argv[1:]),
    )


OUTPUT_FLAGS = ("--models-root", "--reports-root", "--checkpoints-dir")


def recorded_command(argv: list[str]) -> str:
    """The command line for the model card, without the flags that only choose output folders."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in OUTPUT_FLAGS:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in OUTPUT_FLAGS)):
            kept.append(arg)
    return " ".join(shlex.quote(a) for a in kept)


def run(args, command: str) -> Path:
    from training.report import write_report

    task = get_task(args.task)
    data = args.data or DEFAULT_DATA_ROOT / task.dataset_dir
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


def validation_figures(task: TaskSpec, p: Prepared, metrics: dict, probs, seed: int) -> dict:
    """info_json "validation": the figures of this run's validation split that the task's
    floor (training/tasks.py) names, with how they were measured."""
    from training.export import finding_figures

    unit = f"{len(np.unique(p.scans_val))} scans" if p.scans_val is not None else "images"
    out = {
        "how": f"one seeded split (seed {seed}), {len(p.y_val)} validation images ({unit}) that "
        "also chose early stopping and the temperature (and threshold): optimistic",
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "auc": metrics["auc"],
    }
    if "scan_level" in metrics:
        out["scan_auc"] = metrics["scan_level"]["auc"]
        out["scans"] = metrics["scan_level"]["scans"]
    if task.label_groups and probs is not None:
        groups, positive = task.label_groups, task.positive_finding
        out.update(finding_figures(p.y_val, probs, p.labels, groups, positive))
    return out


def training_info(task: TaskSpec, p: Prepared, metrics: dict, probs, seed: int) -> dict:
    """The info_json object of a model trained (or assembled) on `p`'s split."""
    from training.export import build_info, top_fraction_scan_rule

    scan = metrics.get("scan_level")
    rule = top_fraction_scan_rule(SCAN_TOP_FRACTION, scan["threshold"]) if scan else None
    return build_info(
        task.name, p.labels, validation_figures(task, p, metrics, probs, seed), scan_rule=rule
    )


def export_version(model, task: TaskSpec, p: Prepared, size: int, metrics: dict, args, probs=None):
    """Export `model` as the task's next version under `args.models_root` (labels, threshold
    and temperature from `metrics`, info_json from `training_info`, `probs` being the calibrated
    validation probabilities), add its latency and info to `metrics`; returns the version folder
    and the report folder that belongs to it."""
    from training.export import export_model, next_version

    metrics["info_json"] = training_info(task, p, metrics, probs, args.seed)
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
    )
    metrics["latency_batch1"] = measure_latency(version_dir, size, task.channels)
    return version_dir, args.reports_root / task.name / f"v{version}"


def note_report(checkpoint: Path, report_dir: Path) -> None:
    """Remember which report belongs to a checkpoint (an ensemble copies its members' reports)."""
    meta_path = checkpoint.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["report"] = str(Path(report_dir).resolve())
    meta_path.write_text(json.dumps(meta))


if __name__ == "__main__":
    main()
