"""Metrics for the evaluation report: calibration, thresholds, confidence intervals, plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import (
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from ct_contract import scan_rule

ECE_BINS = 15
TARGET_SENSITIVITY = 0.95


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T minimising the validation negative log-likelihood of softmax(logits / T)."""

    def nll(t: float) -> float:
        return -float(np.mean(log_softmax(logits / t, axis=1)[np.arange(len(y)), y]))

    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)


def calibrated(logits: np.ndarray, temperature: float) -> np.ndarray:
    return softmax(logits / temperature, axis=1)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: mean |accuracy - confidence| over equal-width confidence bins, weighted."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs((pred[mask] == y[mask]).mean() - conf[mask].mean())
    return float(ece)


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS):
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.linspace(0, 1, bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            rows.append(
                ((lo + hi) / 2, conf[mask].mean(), (pred[mask] == y[mask]).mean(), mask.sum())
            )
    return rows


def sensitivity_threshold(
    scores: np.ndarray, positive: np.ndarray, target: float = TARGET_SENSITIVITY
) -> float:
    """The highest threshold whose sensitivity (score >= t on positives) reaches `target`."""
    pos = np.sort(scores[positive.astype(bool)])
    if len(pos) == 0:
        return 0.5
    k = int(np.floor((1 - target) * len(pos)))  # at most k positives may fall below
    return float(pos[k])


def binary_at(scores: np.ndarray, positive: np.ndarray, threshold: float) -> dict:
    pred = scores >= threshold
    pos = positive.astype(bool)
    tp, fn = int((pred & pos).sum()), int((~pred & pos).sum())
    tn, fp = int((~pred & ~pos).sum()), int((pred & ~pos).sum())
    return {
        "threshold": threshold,
        "sensitivity": tp / max(tp + fn, 1),
        "specificity": tn / max(tn + fp, 1),
        "ppv": tp / max(tp + fp, 1),
        "npv": tn / max(tn + fn, 1),
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
    }


def auc(y: np.ndarray, probs: np.ndarray) -> float:
    if probs.shape[1] == 2:
        return float(roc_auc_score(y, probs[:, 1]))
    return float(
        roc_auc_score(
            y, probs, multi_class="ovr", average="macro", labels=list(range(probs.shape[1]))
        )
    )


def bootstrap_ci(
    metric,
    y: np.ndarray,
    probs: np.ndarray,
    groups: np.ndarray | None = None,
    n: int = 500,
    seed: int = 0,
) -> tuple[float, float]:
    """95% percentile interval, resampling groups (scans) where given, else images."""
    rng = np.random.default_rng(seed)
    units = np.unique(groups) if groups is not None else np.arange(len(y))
    index = {u: np.flatnonzero(groups == u) for u in units} if groups is not None else None
    values = []
    for _ in range(n):
        pick = rng.choice(units, len(units), replace=True)
        idx = np.concatenate([index[u] for u in pick]) if index else pick
        if len(np.unique(y[idx])) < len(np.unique(y)):
            continue
        values.append(metric(y[idx], probs[idx]))
    if not values:
        return float("nan"), float("nan")
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def classification_metrics(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    pred = probs.argmax(axis=1)
    p, r, f, s = precision_recall_fscore_support(
        y, pred, labels=range(len(labels)), zero_division=0
    )
    return {
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(f.mean()),
        "per_class": {
            lab: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, lab in enumerate(labels)
        },
        "confusion": confusion_matrix(y, pred, labels=range(len(labels))).tolist(),
    }


def aggregate_scans(scores: np.ndarray, scans: np.ndarray, top_fraction: float):
    """Scan verdict score = mean of its top `top_fraction` slice scores (at least one slice)."""
    ids = np.unique(scans)
    return ids, np.array(
        [scan_rule.top_fraction_mean(scores[scans == s], top_fraction) for s in ids]
    )


def plot_all(
    out: Path, labels, y, probs, history: dict, binary_scores=None, threshold=None
) -> list[str]:
    """Confusion matrix, ROC, reliability diagram, training curves as PNGs; returns file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        names.append(name)

    cm = confusion_matrix(y, probs.argmax(axis=1), labels=range(len(labels)))
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(labels), 1 + 0.6 * len(labels)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    ax.set_xlabel("predicted (argmax)")
    ax.set_ylabel("true")
    save(fig, "confusion_matrix.png")

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for k, lab in enumerate(labels if len(labels) > 2 else labels[1:]):
        k = k if len(labels) > 2 else 1
        fpr, tpr, _ = roc_curve(y == k, probs[:, k])
        ax.plot(fpr, tpr, label=lab)
    if binary_scores is not None and threshold is not None:
        op = binary_at(binary_scores, y == 1, threshold)
        ax.plot(1 - op["specificity"], op["sensitivity"], "ro", label="stored threshold")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7)
    save(fig, "roc.png")

    rows = reliability(probs, y)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.bar(
        [r[0] for r in rows],
        [r[2] for r in rows],
        width=1 / ECE_BINS,
        alpha=0.6,
        edgecolor="k",
        label="accuracy",
    )
    ax.plot([r[1] for r in rows], [r[2] for r in rows], "o-", color="C1", label="mean confidence")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    save(fig, "reliability.png")

    if not history:  # an ensemble: its members' reports hold their curves
        return names
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in zip(axes, ("loss", "auc"), strict=True):
        for prefix in ("", "val_"):
            if prefix + key in history:
                ax.plot(history[prefix + key], label=prefix + key)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    save(fig, "training_curves.png")
    return names
