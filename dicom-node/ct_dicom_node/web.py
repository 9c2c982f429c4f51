"""The node's HTTP side on a small threaded server: GET /healthz (the SCP serves and the worker
runs), GET /metrics (Prometheus) and, when configured, STOW-RS POST /studies (ct_dicom_node.stow).
Errors are the gateway's JSON shape {"error": {"code", "message"}}."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ct_dicom_node import stow

JSON = "application/json"


def serve_http(node: Any, bind: str, port: int) -> ThreadingHTTPServer:
    """Start the server for `node` (a ct_dicom_node.node.Node) in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/healthz":
                ok = node.healthy()
                self._json(200 if ok else 503, {"status": "ok" if ok else "down"})
            elif self.path == "/metrics":
                self._send(200, generate_latest(node.metrics.registry), CONTENT_TYPE_LATEST)
            else:
                self._error(404, "not_found", "no such path")

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?")[0].rstrip("/") != "/studies":
                self._error(404, "not_found", "no such path")
                return
            status, body = _stow(node, self.headers, self.rfile)
            self._send(status, json.dumps(body).encode(), stow_type(status))

        def _json(self, status: int, body: dict) -> None:
            self._send(status, json.dumps(body).encode(), JSON)

        def _error(self, status: int, code: str, message: str) -> None:
            self._json(status, {"error": {"code": code, "message": message}})

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


def stow_type(status: int) -> str:
    return "application/dicom+json" if status in (200, 202, 409) else JSON


def _stow(node: Any, headers: Any, stream: Any) -> tuple[int, dict]:
    """(status, body) of one STOW-RS request."""
    settings = node.config
    if settings.stow_token_file is None:
        return 404, _err("not_found", "STOW-RS is off (no stow_token_file)")
    if not stow.authorized(headers.get("Authorization"), settings.stow_token_file):
        return 401, _err("unauthorized", "a valid bearer token is required")
    try:
        length = int(headers.get("Content-Length", ""))
    except ValueError:
        return 411, _err("length_required", "Content-Length is required")
    if not 0 < length <= settings.max_series_bytes:
        return 413, _err("too_large", f"at most {settings.max_series_bytes} bytes")
    node.metrics.associations.labels("stow").inc()
    try:
        files = stow.parts(headers.get("Content-Type", ""), stream.read(length))
    except stow.StowError as exc:
        return exc.status, _err("bad_request", str(exc))
    answer = stow.store_all(files, node.stow_store)
    return answer.status, answer.body


def _err(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}
