"""Latency figures, one rule for every benchmark: a timer, a percentile, a tally, a summary."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Tally:
    """Latencies of the requests that succeeded and counts of the failures, thread-safe."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)

    def error(self, what: str) -> None:
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1


def load() -> list[float]:
    """The load average (1, 5, 15 min), rounded: every figure is read with it."""
    return [round(x, 2) for x in os.getloadavg()]


def percentile(sorted_values: list[float], q: float) -> float:
    """The value at rank q * n of sorted values (nan when there are none)."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def timed(call: Callable[[], object], n: int) -> list[float]:
    """Seconds each of `n` calls took (perf_counter)."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def latency_stats(seconds: list[float]) -> dict:
    """n and p50/p95/p99 in ms (None when there are no figures)."""
    ms = sorted(s * 1000 for s in seconds)
    out: dict = {"n": len(ms)}
    for name, q in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        out[name] = round(percentile(ms, q), 2) if ms else None
    return out


def summary_line(name: str, seconds: list[float], width: int = 44) -> str:
    """One printed line: n, mean, p50 and p95 in ms."""
    ms = sorted(s * 1000 for s in seconds)
    return (
        f"{name:<{width}} n={len(ms):<4} mean {statistics.fmean(ms):7.2f} ms  "
        f"p50 {percentile(ms, 0.5):7.2f} ms  p95 {percentile(ms, 0.95):7.2f} ms"
    )
