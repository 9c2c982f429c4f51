"""A few Prometheus counters in TF Serving's names: request count and latency per model."""

from __future__ import annotations

import threading
from collections import defaultdict


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = defaultdict(int)
        self._latency: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])

    def record(self, model: str, api: str, status: str, seconds: float) -> None:
        with self._lock:
            self._requests[(model, status)] += 1
            total = self._latency[(model, api)]
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
        for (model, api), (total, count) in latency:
            labels = f'API="{api}",entrypoint="GRPC",model_name="{model}"'
            lines.append(f":tensorflow:serving:request_latency_sum{{{labels}}} {total:.1f}")
            lines.append(f":tensorflow:serving:request_latency_count{{{labels}}} {count}")
        return "\n".join(lines) + "\n"
