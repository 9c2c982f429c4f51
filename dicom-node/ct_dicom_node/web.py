"""/healthz (the SCP serves and the worker runs) and /metrics (Prometheus) on a small threaded
HTTP server; nothing else is served."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class Served(Protocol):
    def healthy(self) -> bool: ...

    @property
    def metrics(self): ...


def serve_http(node: Served, bind: str, port: int) -> ThreadingHTTPServer:
    """Start the server in a daemon thread; `.shutdown()` stops it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/healthz":
                ok = node.healthy()
                self._send(
                    200 if ok else 503,
                    b'{"status": "ok"}' if ok else b'{"status": "down"}',
                    "application/json",
                )
            elif self.path == "/metrics":
                registry: CollectorRegistry = node.metrics.registry
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            else:
                self._send(
                    404,
                    b'{"error": {"code": "not_found", "message": "no such path"}}',
                    "application/json",
                )

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # probes every few seconds: no access log
            return

    server = ThreadingHTTPServer((bind, port), Handler)
    threading.Thread(target=server.serve_forever, name="dicom-node-http", daemon=True).start()
    return server
