"""The one observability hook: each request's route, task, status and latency, computed once.

`init_app` registers the Flask hooks: the request id is accepted or made (X-Request-ID, bound to
every log line of the request), a timer and the in-flight gauge start; when the response is ready
one RequestRecord is built and the same record feeds the access log line and the request metrics.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flask import Flask, Response, g, request

from gateway.config import Settings
from gateway.observability import logs, metrics

_access = logging.getLogger("gateway.access")


@dataclass(frozen=True)
class RequestRecord:
    request_id: str
    method: str
    path: str
    route: str  # the URL rule; "unmatched" when no route matched
    task: str | None  # the task the URL names, as sent (None: the route names none)
    task_label: str  # the task as a bounded metrics label ("" when none)
    status: int
    latency_s: float

    def log_fields(self) -> dict:
        return {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "latency_ms": round(self.latency_s * 1000, 2),
            "task": self.task,
        }


def task_label(route: str, task: str | None, settings: Settings) -> str:
    """/predict counts as the default task; names the gateway does not serve as "unknown"."""
    if route == "/predict":
        return settings.default_task
    if task and task not in settings.models:
        return "unknown"  # bound the label set
    return task or ""


def init_app(app: Flask, settings: Settings) -> None:
    @app.before_request
    def _start() -> None:
        g.request_id = logs.accept_request_id(request.headers.get(logs.REQUEST_ID_HEADER))
        g.log_token = logs.bind_request_id(g.request_id)
        g.ct_started = time.perf_counter()
        metrics.IN_FLIGHT.inc()

    @app.after_request
    def _finish(response: Response) -> Response:
        record = _record(response, settings)
        response.headers[logs.REQUEST_ID_HEADER] = record.request_id
        _access.info("request", extra=record.log_fields())
        labels = (record.route, record.task_label, str(record.status))
        metrics.REQUESTS.labels(*labels).inc()
        metrics.REQUEST_LATENCY.labels(*labels).observe(record.latency_s)
        return response

    @app.teardown_request
    def _stop(_exc: BaseException | None) -> None:
        if "ct_started" in g:
            metrics.IN_FLIGHT.dec()
        token = g.pop("log_token", None)
        if token is not None:
            logs.unbind_request_id(token)


def _record(response: Response, settings: Settings) -> RequestRecord:
    route = request.url_rule.rule if request.url_rule else "unmatched"
    task = (request.view_args or {}).get("task")
    return RequestRecord(
        request_id=g.get("request_id") or logs.new_request_id(),
        method=request.method,
        path=request.path,
        route=route,
        task=task,
        task_label=task_label(route, task, settings),
        status=response.status_code,
        latency_s=time.perf_counter() - g.get("ct_started", time.perf_counter()),
    )
