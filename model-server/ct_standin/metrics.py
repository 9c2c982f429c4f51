"""Prometheus series in TF Serving's names and types:
- :tensorflow:serving:request_count (counter; model_name, status);
- :tensorflow:serving:request_latency (histogram, microseconds; model_name, API, entrypoint),
  with TF Serving's buckets: Exponential(10, 1.8, 33), 10 us up to ~20 minutes;
- the sizes of the batches the batcher ran.

TF Serving records batch sizes as /tensorflow/serving/batching_session/processed_batch_size and
padding_size (percentile samplers, which its Prometheus exporter does not publish); the stand-in
publishes them as histograms under the same names so a test or a person can see batching work.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable, Sequence

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
LATENCY_BUCKETS = tuple(10 * 1.8**i for i in range(33))  # monitoring::Buckets::Exponential
BATCHING_PREFIX = ":tensorflow:serving:batching_session"
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
RECENT_BATCHES = 1000


class Histograms:
    """One histogram family: a cell per label values (not thread-safe: callers lock)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._cells: dict[tuple, list] = {}  # labels -> [count per bucket, sum, count]

    def observe(self, labels: tuple, value: float) -> None:
        cell = self._cells.setdefault(labels, [[0] * len(self.bounds), 0, 0])
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                cell[0][index] += 1
                break
        cell[1] += value
        cell[2] += 1

    def render(self, metric: str, names: Sequence[str]) -> list[str]:
        """Exposition lines (no TYPE line): cumulative buckets, +Inf, _sum, _count."""
        lines = []
        for labels, (buckets, total, count) in sorted(self._cells.items()):
            text = ",".join(f'{n}="{v}"' for n, v in zip(names, labels, strict=True))
            cumulative = 0
            for bound, bucket in zip(self.bounds, buckets, strict=True):
                cumulative += bucket
                lines.append(f'{metric}_bucket{{{text},le="{bound:g}"}} {cumulative}')
            lines.append(f'{metric}_bucket{{{text},le="+Inf"}} {count}')
            lines.append(f"{metric}_sum{{{text}}} {total}")
            lines.append(f"{metric}_count{{{text}}} {count}")
        return lines


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = defaultdict(int)
        self._latency = Histograms(LATENCY_BUCKETS)
        self._batches = {
            name: Histograms(BATCH_BUCKETS) for name in ("processed_batch_size", "padding_size")
        }
        self._recent: dict[str, deque[int]] = defaultdict(lambda: deque(maxlen=RECENT_BATCHES))
        self._gauges: dict[str, Callable[[], int]] = {}

    def add_gauge(self, name: str, read: Callable[[], int]) -> None:
        """A value read when scraped, e.g. the batcher's queue depth (a stand-in extra)."""
        self._gauges[name] = read

    def record_batch(self, model: str, rows: int, padding: int, requests: int) -> None:
        """One forward pass of the batcher: its size after padding, and the padding rows."""
        with self._lock:
            self._batches["processed_batch_size"].observe((model,), rows)
            self._batches["padding_size"].observe((model,), padding)
            self._recent[model].append(rows)

    def batch_sizes(self, model: str) -> list[int]:
        """The latest processed batch sizes for `model`, oldest first (tests, benchmarks)."""
        with self._lock:
            return list(self._recent.get(model, ()))

    def record(
        self, model: str, api: str, status: str, seconds: float, entrypoint: str = "GRPC"
    ) -> None:
        with self._lock:
            self._requests[(model, status)] += 1
            # TF Serving records whole microseconds
            self._latency.observe((model, api, entrypoint), int(seconds * 1e6))

    def render(self) -> str:
        """Prometheus text exposition format."""
        with self._lock:
            lines = [
                f"# HELP {REQUEST_COUNT} The total number of requests.",
                f"# TYPE {REQUEST_COUNT} counter",
            ]
            lines += [
                f'{REQUEST_COUNT}{{model_name="{m}",status="{s}"}} {n}'
                for (m, s), n in sorted(self._requests.items())
            ]
            lines += [
                f"# HELP {REQUEST_LATENCY} Distribution of wall time (in microseconds) for "
                "Tensorflow Serving request.",
                f"# TYPE {REQUEST_LATENCY} histogram",
                *self._latency.render(REQUEST_LATENCY, ("model_name", "API", "entrypoint")),
            ]
            for name, histograms in self._batches.items():
                metric = f"{BATCHING_PREFIX}:{name}"
                rendered = histograms.render(metric, ("model_name",))
                if rendered:
                    lines += [f"# TYPE {metric} histogram", *rendered]
        for name, read in sorted(self._gauges.items()):
            lines += [f"# TYPE {name} gauge", f"{name} {read()}"]
        return "\n".join(lines) + "\n"
