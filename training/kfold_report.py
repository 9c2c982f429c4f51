"""The figures and Markdown report of a repeated grouped k-fold run (training/kfold.py): per-fold
and pooled out-of-fold AUCs, and scans at a threshold chosen on the other folds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training import evaluate as ev
from training.paths import REPORTS_ROOT
from training.scan_eval import SCAN_TOP_FRACTION, binary_auc, scan_verdicts
from training.tables import markdown_table


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


def rewrite_report(scores_json: Path, **namespace) -> Path:
    """Re-write a k-fold report from its saved out-of-fold scores (`--scores-dir`), e.g. after
    the report's format changed; `namespace`: the run's arguments (folds, epochs, arch, ...)."""
    result = json.loads(Path(scores_json).read_text())
    args = argparse.Namespace(**{"reports_root": REPORTS_ROOT, "mil": False, **namespace})
    positive, scans = np.array(result["labels_positive"]), np.array(result["scans"])
    name = Path(scores_json).stem
    return write_kfold("brain-stroke", name, args, args.size, result, positive, scans)
