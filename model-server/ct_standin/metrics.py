"""A few Prometheus series in TF Serving's names: request count and latency per model, and the
sizes of the batches the batcher ran.

TF Serving records batch sizes as /tensorflow/serving/batching_session/processed_batch_size and
padding_size (percentile samplers, which its Prometheus exporter does not publish); the stand-in
publishes them as histograms under the same names so a test or a person can see batching work.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
BATCHING_PREFIX = ":tensorflow:serving:batching_session"
RECENT_BATCHES = 1000


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = defaultdict(int)
        self._latency: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0])
        # (series, model) -> [count per bucket (cumulative at render), sum, count]
        self._batches: dict[tuple[str, str], list] = defaultdict(
            lambda: [[0] * len(BATCH_BUCKETS), 0, 0]
        )
        self._recent: dict[str, deque[int]] = defaultdict(lambda: deque(maxlen=RECENT_BATCHES))
        self._gauges: dict[str, Callable[[], int]] = {}

    def add_gauge(self, name: str, read: Callable[[], int]) -> None:
        """A value read when scraped, e.g. the batcher's queue depth (a stand-in extra)."""
        self._gauges[name] = read

    def record_batch(self, model: str, rows: int, padding: int, requests: int) -> None:
        """One forward pass of the batcher: its size after padding, and the padding rows."""
        with self._lock:
            self._observe(("processed_batch_size", model), rows)
            self._observe(("padding_size", model), padding)
            self._recent[model].append(rows)

    def _observe(self, key: tuple[str, str], value: int) -> None:
        buckets, _, _ = entry = self._batches[key]
        for index, bound in enumerate(BATCH_BUCKETS):
            if value <= bound:
                buckets[index] += 1
                break
        entry[1] += value
        entry[2] += 1

    def batch_sizes(self, model: str) -> list[int]:
        """The latest processed batch sizes for `model`, oldest first (tests, benchmarks)."""
        with self._lock:
            return list(self._recent.get(model, ()))

    def record(
        self, model: str, api: str, status: str, seconds: float, entrypoint: str = "GRPC"
    ) -> None:
        with self._lock:
            self._requests[(model, status)] += 1
            total = self._latency[(model, api, entrypoint)]
            total[0] += seconds * 1e6  # TF Serving reports latency in microseconds
            total[1] += 1

    def render(self) -> str:
        """Prometheus text exposition format."""
        with self._lock:
            requests = sorted(self._requests.items())
            latency = sorted((key, tuple(value)) for key, value in self._latency.items())
        lines = [
            "# HELP :tensorflow:serving:request_count The total number of requests.",
            "# TYPE :tensorflow:serving:request_count counter",
        ]
        lines += [
            f':tensorflow:serving:request_count{{model_name="{m}",status="{s}"}} {n}'
            for (m, s), n in requests
        ]
        lines += [
            "# HELP :tensorflow:serving:request_latency Request latency in microseconds.",
            "# TYPE :tensorflow:serving:request_latency summary",
        ]
        for (model, api, entrypoint), (total, count) in latency:
            labels = f'API="{api}",entrypoint="{entrypoint}",model_name="{model}"'
            lines.append(f":tensorflow:serving:request_latency_sum{{{labels}}} {total:.1f}")
            lines.append(f":tensorflow:serving:request_latency_count{{{labels}}} {count}")
        lines += self._render_batches()
        for name, read in sorted(self._gauges.items()):
            lines += [f"# TYPE {name} gauge", f"{name} {read()}"]
        return "\n".join(lines) + "\n"

    def _render_batches(self) -> list[str]:
        with self._lock:
            series = sorted((k, [list(v[0]), v[1], v[2]]) for k, v in self._batches.items())
        lines: list[str] = []
        for (name, model), (buckets, total, count) in series:
            metric = f"{BATCHING_PREFIX}:{name}"
            if f"# TYPE {metric} histogram" not in lines:
                lines.append(f"# TYPE {metric} histogram")
            cumulative = 0
            for bound, bucket in zip(BATCH_BUCKETS, buckets, strict=True):
                cumulative += bucket
                lines.append(f'{metric}_bucket{{model_name="{model}",le="{bound}"}} {cumulative}')
            lines.append(f'{metric}_bucket{{model_name="{model}",le="+Inf"}} {count}')
            lines.append(f'{metric}_sum{{model_name="{model}"}} {total}')
            lines.append(f'{metric}_count{{model_name="{model}"}} {count}')
        return lines
