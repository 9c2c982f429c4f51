"""A trained model's validation figures: metrics after temperature scaling, the two-class
threshold and scan rule (training/evaluation/scans.py), finding-level figures, and the info_json
`validation` object the task's floor judges."""

from __future__ import annotations

import numpy as np

from training.data.prepare import Prepared
from training.evaluation import metrics as ev
from training.evaluation.scans import scan_level, served_scan_rule
from training.tasks import TaskSpec


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


def finding_figures(
    y: np.ndarray, probs: np.ndarray, labels: list[str], groups: dict, positive: str
) -> dict:
    """Finding-level figures: an image's finding is the group with the largest summed
    probability; accuracy, sensitivity of the `positive` finding and specificity, each with a
    95% bootstrap interval over images."""
    names = list(groups)
    member = np.array([[lab in groups[g] for g in names] for lab in labels], np.float64)
    truth = member[y].argmax(axis=1)
    pred = (probs @ member).argmax(axis=1)
    pos = names.index(positive)
    one_hot = np.eye(len(names))[pred]  # bootstrap_ci hands rows of this to the metric

    def accuracy(t, p):
        return float((p.argmax(axis=1) == t).mean())

    def sensitivity(t, p):
        return float((p.argmax(axis=1)[t == pos] == pos).mean())

    def specificity(t, p):
        return float((p.argmax(axis=1)[t != pos] != pos).mean())

    out = {}
    for name, metric in (
        ("finding_accuracy", accuracy),
        (f"{positive}_sensitivity", sensitivity),
        ("specificity", specificity),
    ):
        out[name] = metric(truth, one_hot)
        out[f"{name}_ci95"] = list(ev.bootstrap_ci(metric, truth, one_hot))
    out["images"] = int(len(y))
    out["finding_rule"] = "the group with the largest summed probability"
    return out


def validation_figures(task: TaskSpec, p: Prepared, metrics: dict, probs, seed: int) -> dict:
    """info_json "validation": the figures of this run's validation split that the task's
    floor (training/tasks.py) names, with how they were measured."""
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


def training_info(
    task: TaskSpec, p: Prepared, metrics: dict, probs, seed: int, ood: dict | None = None
) -> dict:
    """The info_json object of a model trained (or assembled) on `p`'s split (`ood`: its
    out-of-domain threshold, training/nets/ood.py)."""
    from training.export.savedmodel import build_info

    scan = metrics.get("scan_level")
    rule = served_scan_rule(scan["threshold"]) if scan else None
    figures = validation_figures(task, p, metrics, probs, seed)
    return build_info(task.name, p.labels, figures, scan_rule=rule, ood=ood)
