"""The small REST side: model status like TF Serving's /v1/models/<name>, and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ct_standin.errors import ServingError
from ct_standin.metrics import Metrics
from ct_standin.registry import Registry

log = logging.getLogger(__name__)

METRICS_PATH = "/monitoring/prometheus/metrics"
_STATUS_PATH = re.compile(r"^/v1/models/(?P<name>[^/]+)(?:/versions/(?P<version>\d+))?/?$")


def model_status_json(registry: Registry, name: str, version: int | None) -> dict:
    return {
        "model_version_status": [
            {
                "version": str(number),
                "state": state.state,
                "status": {
                    "error_code": "UNKNOWN" if state.error else "OK",
                    "error_message": state.error,
                },
            }
            for number, state in registry.status(name, version)
        ]
    }


def _handler(registry: Registry, metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == METRICS_PATH:
                return self._send(200, metrics.render().encode(), "text/plain; version=0.0.4")
            match = _STATUS_PATH.match(path)
            if not match:
                return self._json(404, {"error": f"Malformed request: GET {path}"})
            version = match["version"]
            try:
                body = model_status_json(registry, match["name"], version and int(version))
            except ServingError as err:
                return self._json(404, {"error": err.message})
            return self._json(200, body)

        def _json(self, status: int, body: dict) -> None:
            self._send(status, json.dumps(body, indent=1).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            log.debug("REST %s", format % args)

    return Handler


def start_rest_server(
    registry: Registry, metrics: Metrics, port: int, host: str = "0.0.0.0"
) -> ThreadingHTTPServer:
    """Serve REST on a daemon thread; call .shutdown() to stop."""
    server = ThreadingHTTPServer((host, port), _handler(registry, metrics))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    return server
