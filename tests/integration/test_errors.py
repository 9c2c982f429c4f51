"""The real gateway (`python -m gateway`, gunicorn): error statuses, request-size caps, a dead model
server, and stopping without orphans."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures.common import free_port
from tests.fixtures.gateway import running_gateway
from tests.integration.http_helpers import post_file, post_json, predict_url, request

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _big_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("path", "send", "status", "code"),
    [
        ("/v1/models/brain-stroke:predict", lambda u: post_json(u, {}), 400, "missing_field"),
        ("/v1/models/brain-stroke:predict", lambda u: post_file(u, b"x", "file"), 400, None),
        ("/v1/models/brain-stroke:predict", lambda u: request(u, b"{", "application/json"), 400,
         "malformed_json"),
        ("/v1/models/no-such-task:predict", lambda u: post_file(u, b"x"), 404, "unknown_model"),
        ("/v1/models/brain-stroke:predict", lambda u: post_file(u, b"GIF89a broken"), 422,
         "undecodable_image"),
        ("/v1/models/brain-stroke:predict", lambda u: post_file(u, _big_png(8000, 6000)), 413,
         "image_too_large"),
        ("/v1/models/brain-stroke:predict", lambda u: request(u, b"abc", "image/jpeg"), 415,
         "unsupported_media_type"),
        ("/v1/models/brain-stroke:predict", lambda u: request(u), 405, "method_not_allowed"),
        ("/nowhere", lambda u: request(u), 404, "not_found"),
    ],
)  # fmt: skip
def test_error_statuses(gateway_server, path, send, status, code) -> None:
    got, body, headers = send(f"{gateway_server}{path}")
    assert got == status, body
    assert headers["Content-Type"] == "application/json"
    assert set(body["error"]) == {"code", "message"}
    if code:
        assert body["error"]["code"] == code


def test_declared_length_over_the_cap_is_413_before_the_body(gateway_server) -> None:
    host, port = gateway_server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    with contextlib.closing(conn):
        conn.putrequest("POST", "/v1/models/brain-stroke:predict")
        conn.putheader("Content-Type", "multipart/form-data; boundary=x")
        conn.putheader("Content-Length", str(11 << 20))
        conn.endheaders()  # and no body: the answer must not wait for it
        response = conn.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "too_large"


def test_chunked_body_over_the_cap_is_413(gateway_server) -> None:
    host, port = gateway_server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    chunks = (b"x" * (1 << 20) for _ in range(12))
    conn.request("POST", "/v1/models/brain-stroke:predict", body=chunks,
                 headers={"Content-Type": "application/json"}, encode_chunked=True)  # fmt: skip
    with contextlib.closing(conn):
        response = conn.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "too_large"


def test_model_server_down_is_503_and_not_ready() -> None:
    dead = f"127.0.0.1:{free_port()}"
    with running_gateway(dead, wait_for="/healthz", CT_GRPC_DEADLINE_S="2") as gateway:
        status, body, _ = request(f"{gateway.url}/readyz")
        assert status == 503 and body["error"]["code"] == "not_ready"
        assert all(not m["ready"] for m in body["models"].values())
        png = _big_png(64, 64)
        status, body, headers = post_file(predict_url(gateway.url, "brain-stroke"), png)
        assert status == 503 and body["error"]["code"] == "model_server_unavailable"
        assert headers["Retry-After"] == "1"
        assert request(f"{gateway.url}/healthz")[0] == 200


def test_stopping_leaves_no_orphans(model_server) -> None:
    with running_gateway(model_server.target) as gateway:
        # gunicorn spawns workers a random 0-0.1 s apart: /readyz may answer before the second.
        deadline = time.monotonic() + 10
        while len(workers := gateway.worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workers) == 2
    assert gateway.process.returncode == 0
    for pid in [gateway.process.pid, *workers]:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie_of_someone_else(pid)


def _is_zombie_of_someone_else(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    return True
