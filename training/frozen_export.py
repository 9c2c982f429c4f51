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
from training.frozen import FeatureSpec, feature_net
from training.kfold_export import kfold_validation, model_card, oof_calibration
from training.latency import measure_latency
from training.scan_eval import served_scan_rule


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


def export(task, args: Namespace, spec, arrays, result: dict, cv_report, head) -> None:
    """Export the all-scans model of the recipe; `arrays`: (labels, pixels, y, scans, records)."""
    from training.export import build_info, export_model, next_version

    labels, pixels, y_all, scans_all, records = arrays
    pos = labels.index(task.positive_label)
    started = time.time()
    cal = oof_calibration(result, y_all, scans_all, pos)
    cv_args = Namespace(**vars(args), epochs=0)
    validation = kfold_validation(task, cv_args, result, y_all == pos, scans_all, cv_report)
    score_model, ood_info = ood_for(pixels, scans_all, args.size, task.channels)
    rule = served_scan_rule(cal["scan_threshold"])
    info = build_info(task.name, labels, validation, scan_rule=rule, ood=ood_info)
    model = classifier(spec, args.size, task.channels, head, len(labels), pos)
    version = next_version(args.models_root / task.name)
    facts = {"slices": len(y_all), "scans": len(np.unique(scans_all)), "command": result["command"]}
    card_args = Namespace(arch=f"frozen {spec.name} + logistic (C={args.c:g})", epochs=0)
    card = model_card(task, version, card_args, args.size, facts, cal, validation, info, cv_report)
    card += f"\nOut-of-domain score: {json.dumps(ood_info, indent=1)}\n"
    version_dir = export_model(
        model,
        args.models_root,
        task.name,
        labels,
        args.size,
        task.channels,
        threshold=cal["slice_threshold"],
        positive_index=pos,
        temperature=cal["temperature"],
        model_card=card,
        version=version,
        info=info,
        ood=score_model,
    )
    latency = measure_latency(version_dir, args.size, task.channels)
    report_dir = args.reports_root / task.name / f"v{version}"
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.md").write_text(
        card + f"\nFit and export: {(time.time() - started) / 60:.1f} min on this CPU; latency at "
        f"batch 1: median {latency['median_ms']:.1f} ms, p95 {latency['p95_ms']:.1f} ms.\n"
    )
    print(f"exported {version_dir}; report {report_dir}", flush=True)
