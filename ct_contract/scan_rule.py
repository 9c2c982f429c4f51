"""How slice scores become one score per scan: the one implementation training and serving use.

training/evaluation/metrics.py aggregates validation scans with `aggregate`, and the gateway's
series answer applies the rule a model carries in its info_json (ct_contract/signatures.py
INFO_SCAN_RULE).
"""

from __future__ import annotations

import math

import numpy as np

TOP_FRACTION_MEAN = "top_fraction_mean"


def top_count(n_slices: int, top_fraction: float) -> int:
    """How many of a scan's slices its score averages: round(fraction * n), at least one."""
    return max(1, int(round(top_fraction * n_slices)))


def top_fraction_mean(scores: np.ndarray, top_fraction: float) -> float:
    """Mean of the highest `top_fraction` of `scores` (at least one score)."""
    values = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))[::-1]
    if values.size == 0:
        raise ValueError("a scan needs at least one slice score")
    return float(values[: top_count(values.size, top_fraction)].mean())


def describe(top_fraction: float) -> str:
    share = (
        f"{top_fraction:.0%}"
        if math.isclose(top_fraction * 100, round(top_fraction * 100))
        else f"{top_fraction:g}"
    )
    return f"mean of the top {share} of slice probabilities of the scan"


AGGREGATIONS = {TOP_FRACTION_MEAN: top_fraction_mean}
