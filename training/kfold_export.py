"""`crossval --folds K --export`: train the recipe on every scan and export it, its info_json
validation being the k-fold figures (training/kfold_report.py)."""

from __future__ import annotations

import json
import time
from argparse import Namespace

import numpy as np

from training import evaluate as ev
from training.checkpoints import save_checkpoint
from training.fit import fit
from training.kfold_report import kfold_summary
from training.latency import measure_latency
from training.prepare import from_arrays
from training.scan_eval import scan_verdicts, served_scan_rule


def oof_calibration(result: dict, y_all: np.ndarray, scans_all: np.ndarray, pos: int) -> dict:
    """Temperature, slice threshold and scan threshold from the first repeat's out-of-fold
    scores (each slice scored once, by a fold model of the same recipe)."""
    positive = y_all == pos
    oof = np.array(result["oof"]["1"]["scores"])
    z = np.log(oof) - np.log1p(-oof)
    logits = np.zeros((len(z), 2))
    logits[:, pos], logits[:, 1 - pos] = z / 2, -z / 2
    temperature = ev.fit_temperature(logits, y_all)
    probs = ev.calibrated(logits, temperature)[:, pos]
    agg, truth = scan_verdicts(probs, positive, scans_all)
    return {
        "temperature": temperature,
        "slice_threshold": ev.sensitivity_threshold(probs, positive),
        "scan_threshold": ev.sensitivity_threshold(agg, truth),
    }


def kfold_validation(task, args: Namespace, result: dict, positive, scans_all, cv_report) -> dict:
    """info_json "validation" of the all-scans model: the k-fold figures of its recipe."""
    reps = kfold_summary(result, positive, scans_all)["repeats"]
    mean = lambda key: float(np.mean([r[key] for r in reps]))  # noqa: E731
    folds = result["folds"]
    return {
        "how": f"repeated scan-grouped {args.folds}-fold cross-validation, {args.repeats} "
        f"repeats, all {len(np.unique(scans_all))} scans (every scan validated once per repeat) "
        f"by fold models of this recipe ({args.epochs} fixed epochs, nothing chosen on the "
        "validation folds); scan_auc and auc (slice): pooled out-of-fold, mean over repeats; "
        "sensitivity/specificity: scans at a 90%-sensitivity threshold chosen on the other "
        "folds; the served model is the same recipe trained on all scans. "
        f"Report: training/reports/{task.name}/{cv_report.name}",
        "scan_auc": mean("scan_auc"),
        "scan_auc_sd_over_folds": float(np.nanstd([f["scan_auc"] for f in folds], ddof=1)),
        "scan_auc_mean_over_folds": float(np.nanmean([f["scan_auc"] for f in folds])),
        "auc": mean("slice_auc"),
        "scan_sensitivity": mean("sensitivity"),
        "scan_specificity": mean("specificity"),
        "scans": int(len(np.unique(scans_all))),
        "folds": args.folds,
        "repeats": args.repeats,
    }


def export_all_scans(task, size, args, result, x_all, y_all, scans_all, records, cv_report):
    """Train the recipe on every scan (fixed epochs, nothing held out) and export it. Temperature
    and thresholds come from the out-of-fold scores of the first repeat (the final model's
    score scale is assumed alike that of the fold models, trained on 4/5 of the scans)."""
    from training.export import build_info, export_model, next_version

    labels = sorted({r.label for r in records})
    pos = labels.index(task.positive_label)
    cal = oof_calibration(result, y_all, scans_all, pos)
    validation = kfold_validation(task, args, result, y_all == pos, scans_all, cv_report)
    info = build_info(
        task.name, labels, validation, scan_rule=served_scan_rule(cal["scan_threshold"])
    )
    everything = range(len(records))
    p = from_arrays(task, records, labels, x_all, y_all, scans_all, everything, [])
    started = time.time()
    model, _ = fit(
        p,
        arch=args.arch,
        size=size,
        channels=task.channels,
        epochs=args.epochs,
        seed=1,
        init_from=args.init_from,
        batch_size=32,
        patience=args.epochs,
        lr=args.lr,
        keep_best=False,
    )
    command = result["command"]
    save_checkpoint(model, task.name, args.arch, size, task.channels, labels, 0, command)
    version = next_version(args.models_root / task.name)
    facts = {"slices": len(y_all), "scans": len(np.unique(scans_all)), "command": command}
    card = model_card(task, version, args, size, facts, cal, validation, info, cv_report)
    version_dir = export_model(
        model,
        args.models_root,
        task.name,
        labels,
        size,
        task.channels,
        threshold=cal["slice_threshold"],
        positive_index=pos,
        temperature=cal["temperature"],
        model_card=card,
        version=version,
        flip_tta=args.flip_tta,
        info=info,
    )
    latency = measure_latency(version_dir, size, task.channels)
    report_dir = args.reports_root / task.name / f"v{version}"
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.md").write_text(
        card + f"\nFinal training: {(time.time() - started) / 60:.1f} min on this CPU; latency at "
        f"batch 1: median {latency['median_ms']:.1f} ms, p95 {latency['p95_ms']:.1f} ms.\n"
    )
    print(f"exported {version_dir}; report {report_dir}", flush=True)


def model_card(task, version: int, args, size: int, facts, cal, validation, info, report) -> str:
    """The card of the all-scans model (`facts`: slices, scans, command)."""
    return (
        f"# {task.name} v{version}\n\n"
        f"Recipe: `{args.arch}`, {size} px input, {args.epochs} epochs, trained on all "
        f"{facts['scans']} scans ({facts['slices']} slices), nothing held out.\n"
        f"Command: `{facts['command']}`\n\n"
        f"Validation (k-fold, see `{report.name}`): {json.dumps(validation, indent=1)}\n\n"
        f"Temperature {cal['temperature']:.3f}; slice threshold {cal['slice_threshold']:.4f}; "
        f"scan rule threshold {cal['scan_threshold']:.4f} (90% sensitivity on out-of-fold "
        "scores).\n"
        f"Validated: {info['validated']} ({info['validated_reason']}).\n"
        "Intended use: triage support for research and engineering demos; not a medical device.\n"
    )
