"""The info_json validation figures of a re-exported version (training/reexport.py): brain-stroke
the repeated grouped hold-out beside the single split, brain-tumor finding-level figures measured
on the old validation split."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from training import evaluate as ev
from training.errors import TrainingError
from training.paths import REPO
from training.tasks import TaskSpec
from training.validation import finding_figures


def stroke_validation(metrics: dict, crossval: Path) -> dict:
    """The repeated grouped hold-out (the floor's figure) beside the served model's own split."""
    text = crossval.read_text()
    mean = re.search(r"scan AUC (\d+\.\d+) ± (\d+\.\d+)", text)
    splits = len(re.findall(r"^\| \d+ \|", text, re.MULTILINE))
    if not mean or not splits:
        raise TrainingError(f"{crossval} gives no 'scan AUC mean ± sd' line or seed rows")
    scan = metrics["scan_level"]
    return {
        "how": (
            f"scan_auc: repeated grouped hold-out, {splits} seeded scan-grouped splits of about "
            "14 validation scans, the training recipe at 128 px (12 epochs, best epoch per "
            f"split; {crossval.relative_to(REPO)}): a re-run of the recipe, not these weights. "
            "*_single_split: these weights on their own split (seed 1337), chosen as the best "
            f"of three runs on the same {scan['scans']} scans, which also chose the threshold: "
            "optimistic."
        ),
        "scan_auc": float(mean.group(1)),
        "scan_auc_sd": float(mean.group(2)),
        "splits": splits,
        "scan_auc_single_split": scan["auc"],
        "scans_single_split": scan["scans"],
        "slice_auc_single_split": metrics["auc"],
        "scan_sensitivity_single_split": scan["at_threshold"]["sensitivity"],
        "scan_specificity_single_split": scan["at_threshold"]["specificity"],
    }


def class_figures(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    m = ev.classification_metrics(y, probs, labels)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "images": int(len(y))}


def tumour_validation(task: TaskSpec, y, probs, labels: list[str], version: int) -> dict:
    """Finding-level figures, 7-class figures with and without mri_tumor, and mri_tumor alone."""
    out = {
        "how": (
            f"the validation split of version {version} (seed 1337, {len(y)} images; its "
            "split.json), which also chose early stopping, the temperature and this model "
            "among the runs in training/reports/brain-tumor/experiments.md: optimistic. "
            "Images, not patients (the data has no patient ids); 95% CIs bootstrap images."
        ),
        **finding_figures(y, probs, labels, task.label_groups, task.positive_finding),
        "classes": class_figures(y, probs, labels),
    }
    if "mri_tumor" in labels:
        k = labels.index("mri_tumor")
        keep = y != k
        rest = [lab for lab in labels if lab != "mri_tumor"]
        sub = np.delete(probs[keep], k, axis=1)
        out["classes_without_mri_tumor"] = {
            **class_figures(np.where(y[keep] > k, y[keep] - 1, y[keep]), sub, rest),
            "how": "images of other classes, argmax over the other six",
        }
        per = ev.classification_metrics(y, probs, labels)["per_class"]["mri_tumor"]
        out["mri_tumor"] = {key: per[key] for key in ("precision", "recall", "f1", "support")}
    return out


def validation_of(task: TaskSpec, metrics: dict, crossval: Path, y, probs, labels, old: int):
    """The re-export's info_json validation for `task` (else the old report's AUC)."""
    if task.name == "brain-stroke":
        return stroke_validation(metrics, crossval)
    if task.label_groups:
        return tumour_validation(task, y, probs, labels, old)
    return {"how": f"version {old}'s report", "auc": metrics["auc"]}
