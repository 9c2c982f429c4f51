"""Fitting the scan-level rule on validation data: the aggregation (mean of the top fraction of a
scan's slice probabilities), its threshold and its figures. Applying a rule is
ct_contract/scan_rule.py's (through training/evaluation/metrics.py `aggregate_scans`), as the
gateway does."""

from __future__ import annotations

import numpy as np

from ct_contract import scan_rule
from training.evaluation import metrics as ev

SCAN_TOP_FRACTION = 0.25  # scan verdict: mean of the top quarter of its slice probabilities


def scan_verdicts(scores, positive, scans) -> tuple[np.ndarray, np.ndarray]:
    """Per scan: the aggregated score (the served rule) and whether the scan is positive."""
    ids, agg = ev.aggregate_scans(scores, scans, SCAN_TOP_FRACTION)
    return agg, np.array([positive[scans == s][0] for s in ids])


def binary_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of positive-class `scores` (NaN when `truth` holds one class only)."""
    truth = np.asarray(truth).astype(int)
    if len(set(truth.tolist())) < 2:
        return float("nan")
    return float(ev.auc(truth, np.stack([1 - scores, scores], axis=1)))


def scan_level(scores, positive, scans) -> dict:
    """The scan rule's threshold (the target sensitivity on these scans) and its figures."""
    agg, truth = scan_verdicts(scores, positive, scans)
    threshold = ev.sensitivity_threshold(agg, truth)
    return {
        "rule": f"mean of the top {SCAN_TOP_FRACTION:.0%} slice probabilities of the scan",
        "scans": int(len(agg)),
        "auc": binary_auc(truth, agg),
        "threshold": threshold,
        "at_threshold": ev.binary_at(agg, truth, threshold),
    }


def top_fraction_scan_rule(top_fraction: float, threshold: float) -> dict:
    """info_json scan_rule: the mean of the top `top_fraction` of a scan's slice probabilities
    of the positive class, positive at/above `threshold` (`scan_level`)."""
    return {
        "aggregation": scan_rule.TOP_FRACTION_MEAN,
        "top_fraction": float(top_fraction),
        "threshold": float(threshold),
        "description": scan_rule.describe(top_fraction),
    }


def served_scan_rule(threshold: float) -> dict:
    """The info_json scan_rule of training's aggregation at `threshold`."""
    return top_fraction_scan_rule(SCAN_TOP_FRACTION, threshold)
