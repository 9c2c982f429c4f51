"""The one latency timer: a callable at batch 1 on this CPU, warmed up, then timed run by run."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def time_calls(fn: Callable[[], object], runs: int = 100, warmup: int = 10) -> dict:
    """Median and p95 wall time of `fn()` in ms, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}


def measure_latency(
    version_dir: Path, size: int, channels: int, runs: int = 100, signature: str = "serving_default"
) -> dict:
    """A signature of the exported SavedModel at batch 1 (median and p95, ms)."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(version_dir)).signatures[signature]
    x = tf.constant(np.random.default_rng(0).integers(0, 256, (1, size, size, channels), np.uint8))
    return time_calls(lambda: fn(image=x), runs)


def keras_latency(model, size: int, channels: int, runs: int = 100) -> dict:
    """The Keras forward pass (traced once) at batch 1 (median and p95, ms)."""
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False))
    x = tf.zeros([1, size, size, channels])
    return time_calls(lambda: fn(x), runs)
