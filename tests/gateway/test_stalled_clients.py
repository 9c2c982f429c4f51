"""Slow and stalled clients against the real gateway (gunicorn + gateway/server.py): a stalled
upload costs a socket, not a thread; it gets a JSON 408 when its time is up; everyone else is
answered meanwhile, /healthz and /readyz included."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest

from tests.fixtures.gateway import running_gateway, stalled_uploads

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STALLED = 100
REQUEST_TIMEOUT_S = 4
GENEROUS_S = 5.0  # the answers below come in milliseconds; before this change they took ~50 s


def _timed_get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
        return response.status, time.monotonic() - started


def _timed_predict(url: str, image: bytes) -> tuple[int, float]:
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a"\r\n\r\n'
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as response:
        json.loads(response.read())
        return response.status, time.monotonic() - started


def _read_answer(sock: socket.socket) -> bytes:
    sock.settimeout(REQUEST_TIMEOUT_S + 20)
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_stalled_uploads_do_not_stall_anyone_else(model_server, shared_samples):
    image = (shared_samples / "brain-stroke_stroke.jpg").read_bytes()
    env = {"CT_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S), "CT_WORKERS": "2", "CT_THREADS": "4"}
    with running_gateway(model_server.target, **env) as gateway:
        stalled = stalled_uploads(gateway.port, STALLED)
        try:
            timings = {
                "healthz": _timed_get(gateway.url + "/healthz"),
                "readyz": _timed_get(gateway.url + "/readyz"),
                "predict": _timed_predict(gateway.url + "/v1/models/brain-stroke:predict", image),
            }
            print(f"\nwith {STALLED} stalled uploads: " + ", ".join(
                f"{name} {status} in {seconds * 1000:.0f} ms"
                for name, (status, seconds) in timings.items()
            ))  # fmt: skip
            for name, (status, seconds) in timings.items():
                assert status == 200 and seconds < GENEROUS_S, (name, status, seconds)
            answer = _read_answer(stalled[0])
            status_line, _, rest = answer.partition(b"\r\n")
            assert status_line.startswith(b"HTTP/1.1 408"), answer[:200]
            body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
            assert body["error"]["code"] == "request_timeout"
        finally:
            for sock in stalled:
                sock.close()
        assert _timed_get(gateway.url + "/healthz")[0] == 200


def test_a_body_declared_over_the_cap_is_413_without_waiting_for_it(model_server):
    with running_gateway(model_server.target, CT_MAX_REQUEST_BYTES="1000") as gateway:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/models/brain-stroke:predict HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"
            )
            answer = _read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b'"too_large"' in answer


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ],
    ids=["request-line", "header", "two-lengths"],
)
def test_unparsable_http_is_answered_with_json(gateway_server, raw):
    with socket.create_connection(("127.0.0.1", gateway_server.gateway.port), timeout=10) as sock:
        sock.sendall(raw)
        answer = _read_answer(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"application/json" in head.lower()
    assert json.loads(body)["error"]["code"] == "bad_http_request"
