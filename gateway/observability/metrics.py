"""Prometheus metrics of the gateway.

Under gunicorn every worker is a process: `python -m gateway` (gunicorn.conf.py) points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before workers start, so /metrics sums all workers.
Without that variable (tests, `flask run`) each process reports only its own registry.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from gateway.config import PROMETHEUS_MULTIPROC_ENV as MULTIPROC_ENV

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_REQUEST_LABELS = ("route", "task", "status")

REQUESTS = Counter(
    "ct_gateway_requests_total",
    "HTTP requests answered, by route, task and status code.",
    _REQUEST_LABELS,
)
REQUEST_LATENCY = Histogram(
    "ct_gateway_request_duration_seconds",
    "HTTP request latency, by route, task and status code.",
    _REQUEST_LABELS,
    buckets=_LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "ct_gateway_requests_in_flight",
    "HTTP requests being handled.",
    multiprocess_mode="livesum",
)
MODEL_SERVER_LATENCY = Histogram(
    "ct_gateway_model_server_call_duration_seconds",
    "gRPC call latency to the model server, by task and method (retries included).",
    ["task", "method"],
    buckets=_LATENCY_BUCKETS,
)
MODEL_SERVER_ERRORS = Counter(
    "ct_gateway_model_server_errors_total",
    "Failed gRPC calls to the model server, by task, method and gRPC status.",
    ["task", "method", "grpc_status"],
)

# Versions are the few the model server reports for configured tasks; route is stable, canary or
# "" (no version labels configured): a bounded label set.
PREDICTIONS = Counter(
    "ct_gateway_predictions_total",
    "Answered predictions (single images and series), by task, answering version and route.",
    ["task", "version", "route"],
)


def render() -> tuple[bytes, str]:
    """The exposition text of every worker (multiprocess mode) or of this process."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Gunicorn child_exit hook: drop a dead worker's live gauges."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)
