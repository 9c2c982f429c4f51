"""Repeated grouped k-fold of a two-class scan task (`python -m training.crossval --folds K`):
each fold's model trains a fixed number of epochs and scores its validation fold; the
out-of-fold scores are saved as JSON, reported (per-fold and pooled out-of-fold AUCs, scans at a
threshold chosen on the other folds), and with `--export` the recipe is trained on every scan and
exported, its info_json validation being those k-fold figures.

One file although it is long: the run, its report and the export read the same result (the
out-of-fold scores and the summary over repeats), and the frozen-feature recipe
(training/crossval/frozen.py) reuses all three; split apart, the parts imported one another."""

from __future__ import annotations

import json
import shlex
import time
from argparse import Namespace
from pathlib import Path

import numpy as np

from training.cli import TrainingError
from training.data.audit import run_audit
from training.data.images import load_pixels
from training.data.prepare import from_arrays, slice_number
from training.data.split import grouped_kfold
from training.evaluation import metrics as ev
from training.evaluation.latency import measure_latency
from training.evaluation.report import markdown_table
from training.evaluation.scans import (
    SCAN_TOP_FRACTION,
    binary_auc,
    scan_verdicts,
    served_scan_rule,
)
from training.fit import fit, fit_for, predict_logits
from training.nets.checkpoints import save_checkpoint


def kfold(task, data: Path, size: int, audit, args: Namespace) -> None:
    """Repeated grouped k-fold of a two-class scan task; writes the markdown report (and with
    --export trains and exports the all-scans model)."""
    if task.positive_label is None or not task.grouped_by_scan:
        raise TrainingError("--folds: a two-class task grouped by scan (brain-stroke)")
    if args.export and args.neighbours:
        raise TrainingError("--export: a 2.5-D model needs slice stacks the gateway does not send")
    records = audit.records
    labels = sorted({r.label for r in records})
    x_all = load_pixels(records, size, task.channels)
    if args.neighbours:
        x_all = with_neighbours(x_all, records)
    y_all = np.array([labels.index(r.label) for r in records])
    scans_all = np.array([r.scan for r in records])
    name = run_name(args, size)
    args.scores_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m training.crossval " + " ".join(shlex.quote(a) for a in args.argv)
    result = {"command": command, "folds": [], "oof": {}}
    fold_audit = audit_for_folds(task, data, audit, args.folds_from)
    arrays = (records, labels, x_all, y_all, scans_all)
    for repeat in range(1, args.repeats + 1):
        splits = grouped_kfold(fold_audit, args.folds, seed=repeat)
        scores = np.full(len(records), np.nan)
        fold_of = np.full(len(records), -1)
        for k, split in enumerate(splits):
            row = _fold(task, size, args, arrays, split, (repeat, k, name), scores)
            fold_of[split.val] = k
            result["folds"].append(row)
            print(json.dumps(row), flush=True)
            result["oof"][str(repeat)] = {"scores": scores.tolist(), "fold": fold_of.tolist()}
            (args.scores_dir / f"{name}.json").write_text(json.dumps(result))
    pos = labels.index(task.positive_label)
    result["labels_positive"] = (y_all == pos).tolist()
    result["scans"] = scans_all.tolist()
    (args.scores_dir / f"{name}.json").write_text(json.dumps(result))
    cv_report = write_kfold(task.name, name, args, size, result, y_all == pos, scans_all)
    if args.export:
        export_all_scans(task, size, args, result, x_all, y_all, scans_all, records, cv_report)


def run_name(args: Namespace, size: int) -> str:
    """The report's and the scores' file name: recipe, size, MIL, 2.5-D, folds x repeats, tag."""
    name = f"kfold-{args.arch.replace('@', '-')}-{size}{'-mil' if args.mil else ''}"
    name += "-2.5d" if args.neighbours else ""
    return name + f"-{args.folds}x{args.repeats}{'-' + args.tag if args.tag else ''}"


def audit_for_folds(task, data: Path, audit, folds_from: Path | None):
    """The audit the folds are dealt from: `audit`, or that of --folds-from (same file names)."""
    if not folds_from:
        return audit
    fold_audit = run_audit(folds_from, task)
    ours = [r.path.relative_to(data) for r in audit.records]
    theirs = [r.path.relative_to(folds_from) for r in fold_audit.records]
    if ours != theirs:
        raise TrainingError(f"--folds-from {folds_from}: not the same files as {data}")
    return fold_audit


def _fold(task, size: int, args: Namespace, arrays, split, where, scores: np.ndarray) -> dict:
    """Train one fold's model, write its validation scores into `scores`; returns its row."""
    records, labels, x_all, y_all, scans_all = arrays
    repeat, k, name = where
    started = time.time()
    p = from_arrays(task, records, labels, x_all, y_all, scans_all, split.train, split.val)
    model, _ = fit_for(
        task,
        p,
        mil=args.mil,
        arch=args.arch,
        size=size,
        channels=x_all.shape[-1],
        epochs=args.epochs,
        seed=1000 * repeat + k,
        init_from=args.init_from,
        batch_size=32,
        patience=args.epochs,
        lr=args.lr,
        keep_best=False,
    )
    pos = labels.index(task.positive_label)
    logits = predict_logits(model, p.x_val, args.flip_tta)
    z = logits[:, pos] - logits[:, 1 - pos]
    va = np.asarray(split.val, dtype=int)
    scores[va] = 1.0 / (1.0 + np.exp(-z))  # softmax probability of the positive class
    if args.save_models:
        args.save_models.mkdir(parents=True, exist_ok=True)
        model.save_weights(args.save_models / f"{name}-r{repeat}-f{k}.weights.h5")
    row = fold_row(scores[va], y_all[va] == pos, scans_all[va])
    row.update(repeat=repeat, fold=k, minutes=(time.time() - started) / 60)
    return row


def neighbour_index(records) -> np.ndarray:
    """[N, 3] record indices (slice below, the slice, slice above) in the scan's slice order
    (`<scan> (<slice>).jpg`); a scan's first and last slice repeat themselves."""
    out = np.repeat(np.arange(len(records))[:, None], 3, axis=1)
    by_scan: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_scan.setdefault(r.scan, []).append(i)
    for idx in by_scan.values():
        order = sorted(idx, key=lambda i: slice_number(records[i].path.name))
        for k, i in enumerate(order):
            out[i, 0] = order[max(k - 1, 0)]
            out[i, 2] = order[min(k + 1, len(order) - 1)]
    return out


def with_neighbours(x: np.ndarray, records) -> np.ndarray:
    """2.5-D input: single-channel slices [N, S, S, 1] -> [N, S, S, 3] (below, slice, above)."""
    return np.concatenate([x[neighbour_index(records)[:, j]] for j in range(3)], axis=-1)


def fold_row(scores: np.ndarray, positive: np.ndarray, scans: np.ndarray) -> dict:
    """Slice and scan AUC of one validation fold."""
    agg, truth = scan_verdicts(scores, positive, scans)
    return {
        "images": int(len(scores)),
        "scans": int(len(agg)),
        "stroke_scans": int(truth.sum()),
        "slice_auc": binary_auc(positive, scores),
        "scan_auc": binary_auc(truth, agg),
    }


def repeat_summary(scores, fold_of, positive, scans) -> dict:
    """Pooled out-of-fold figures of one repeat, and sensitivity/specificity of the scans at
    each fold's threshold (the served rule's threshold for 90% sensitivity, chosen on the
    other folds' out-of-fold scan scores)."""
    ids = np.unique(scans)
    agg, truth = scan_verdicts(scores, positive, scans)
    scan_fold = np.array([fold_of[scans == s][0] for s in ids])
    tp = fn = tn = fp = 0
    for k in np.unique(scan_fold):
        inside = scan_fold == k
        threshold = ev.sensitivity_threshold(agg[~inside], truth[~inside])
        call = agg[inside] >= threshold
        tp += int((call & truth[inside]).sum())
        fn += int((~call & truth[inside]).sum())
        tn += int((~call & ~truth[inside]).sum())
        fp += int((call & ~truth[inside]).sum())
    return {
        "slice_auc": binary_auc(positive, scores),
        "scan_auc": binary_auc(truth, agg),
        "sensitivity": tp / max(1, tp + fn),
        "specificity": tn / max(1, tn + fp),
        "counts": {"tp": tp, "fn": fn, "tn": tn, "fp": fp},
    }


def kfold_summary(result: dict, positive, scans) -> dict:
    """mean ± sd strings over folds and over repeats (pooled), for reports and info_json."""
    folds = result["folds"]
    repeats = [
        repeat_summary(np.array(o["scores"]), np.array(o["fold"]), positive, scans)
        for o in result["oof"].values()
    ]
    return {
        "scan_auc_folds": _ms([f["scan_auc"] for f in folds]),
        "slice_auc_folds": _ms([f["slice_auc"] for f in folds]),
        "scan_auc_pooled": _ms([r["scan_auc"] for r in repeats]),
        "slice_auc_pooled": _ms([r["slice_auc"] for r in repeats]),
        "sensitivity": _ms([r["sensitivity"] for r in repeats]),
        "specificity": _ms([r["specificity"] for r in repeats]),
        "repeats": repeats,
    }


def _ms(vals) -> str:
    vals = np.array([v for v in vals if np.isfinite(v)])
    if len(vals) < 2:
        return "n/a"
    return f"{vals.mean():.3f} ± {vals.std(ddof=1):.3f}"


def _counts(c: dict) -> str:
    return f"{c['tp']} TP, {c['fn']} FN, {c['tn']} TN, {c['fp']} FP"


def _tables(result: dict, summary: dict) -> tuple[str, str]:
    """The per-repeat and the per-fold Markdown tables."""
    repeats = markdown_table(
        ["repeat", "slice AUC", "scan AUC", "sensitivity", "specificity", "scans at the threshold"],
        [
            [r, f"{s['slice_auc']:.3f}", f"{s['scan_auc']:.3f}", f"{s['sensitivity']:.3f}"]
            + [f"{s['specificity']:.3f}", _counts(s["counts"])]
            for r, s in zip(result["oof"], summary["repeats"], strict=True)
        ],
    )
    folds = markdown_table(
        ["repeat", "fold", "val scans", "val images", "slice AUC", "scan AUC", "minutes"],
        [
            [f["repeat"], f["fold"], f"{f['scans']} ({f['stroke_scans']} stroke)", f["images"]]
            + [f"{f['slice_auc']:.3f}", f"{f['scan_auc']:.3f}", f"{f['minutes']:.1f}"]
            for f in result["folds"]
        ],
    )
    return repeats, folds


def write_kfold(task: str, name: str, args, size: int, result: dict, positive, scans) -> Path:
    """The k-fold report `<reports root>/<task>/crossval-<name>.md`."""
    summary = kfold_summary(result, positive, scans)
    rep_table, fold_table = _tables(result, summary)
    out = args.reports_root / task / f"crossval-{name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"# Repeated grouped {args.folds}-fold CV: {task}, {args.arch}, {size} px"
        f"{' (MIL)' if args.mil else ''}\n\n"
        f"Command: `{result['command']}`\n\n"
        f"Data: `{args.data or 'default'}`. Per repeat r (seed r), the scans are dealt into "
        f"{args.folds} folds stratified by scan label (every scan in exactly one validation "
        f"fold); each fold's model trains {args.epochs} epochs (fixed: the validation fold is "
        "never looked at, no epoch or temperature chosen on it) and scores its fold. Scan score: "
        f"mean of the top {SCAN_TOP_FRACTION:.0%} of a scan's slice probabilities (the served "
        "rule). Threshold: per fold, the highest one reaching 90% scan sensitivity on the "
        "out-of-fold scan scores of the other folds of the repeat (that fold's training scans), "
        "applied to the fold. Pooled AUCs mix fold models whose score scales differ.\n\n"
        f"**Scan AUC per fold {summary['scan_auc_folds']}; pooled out-of-fold scan AUC "
        f"{summary['scan_auc_pooled']}; slice AUC per fold {summary['slice_auc_folds']}, pooled "
        f"{summary['slice_auc_pooled']}; at the threshold: sensitivity "
        f"{summary['sensitivity']}, specificity {summary['specificity']}.** (mean ± sd)\n\n"
        f"## Per repeat (pooled out-of-fold)\n\n{rep_table}\n## Per fold\n\n{fold_table}"
    )
    print(out, json.dumps(summary), flush=True)
    return out


def oof_logits(result: dict, pos: int) -> np.ndarray:
    """Two-class logits of the first repeat's out-of-fold probabilities (log-odds split in half,
    so softmax gives the probability back)."""
    oof = np.clip(np.array(result["oof"]["1"]["scores"]), 1e-7, 1 - 1e-7)
    z = np.log(oof) - np.log1p(-oof)
    logits = np.zeros((len(z), 2))
    logits[:, pos], logits[:, 1 - pos] = z / 2, -z / 2
    return logits


def oof_calibration(result: dict, y_all: np.ndarray, scans_all: np.ndarray, pos: int) -> dict:
    """Temperature, slice threshold and scan threshold from the first repeat's out-of-fold
    scores (each slice scored once, by a fold model of the same recipe)."""
    positive = y_all == pos
    logits = oof_logits(result, pos)
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
    from training.export.savedmodel import build_info, export_model, next_version

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
