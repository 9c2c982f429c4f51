"""gateway/server.py as an ASGI app driven by hand: whole bodies, deadlines, caps, the environ."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.errors import UnauthorizedError
from gateway.server import BufferedWsgi, wsgi_environ


def echo_app(environ, start_response):
    body = environ["wsgi.input"].read()
    out = {
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "length": environ["CONTENT_LENGTH"],
        "type": environ.get("CONTENT_TYPE"),
        "x": environ.get("HTTP_X_THING"),
        "body": body.decode("latin-1"),
    }
    start_response("201 Created", [("Content-Type", "application/json"), ("X-Echo", "1")])
    return [json.dumps(out).encode()]


def scope(path="/v1/models/a:predict", headers=(), method="POST", query=b"") -> dict:
    return {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
            "query_string": query, "headers": list(headers), "http_version": "1.1",
            "server": ("127.0.0.1", 9696), "client": ("127.0.0.1", 5555)}  # fmt: skip


def run(app, scope_: dict, messages: list[dict], stall: bool = False) -> list[dict]:
    """Drive `app` with `messages` (then stall forever, or disconnect); returns what it sent."""
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        if stall:
            await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope_, receive, send))
    return sent


def app(cap: int = 100, timeout: float = 0.2) -> BufferedWsgi:
    return BufferedWsgi(echo_app, threads=2, body_timeout_s=timeout, max_body_bytes=lambda p: cap)


def answer(sent: list[dict]) -> tuple[int, dict, dict]:
    start, body = sent
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, json.loads(body["body"])


def test_the_body_arrives_whole_in_pieces_and_the_app_sees_it():
    chunks = [{"type": "http.request", "body": b"ab", "more_body": True},
              {"type": "http.request", "body": b"cd", "more_body": False}]  # fmt: skip
    headers = [(b"content-type", b"text/plain"), (b"x-thing", b"1"), (b"x-thing", b"2"),
               (b"transfer-encoding", b"chunked")]  # fmt: skip
    status, out_headers, body = answer(run(app(), scope(headers=headers, query=b"a=1"), chunks))
    assert status == 201 and out_headers["X-Echo"] == "1"
    assert body == {"method": "POST", "path": "/v1/models/a:predict", "query": "a=1",
                    "length": "4", "type": "text/plain", "x": "1,2", "body": "abcd"}  # fmt: skip


def test_a_stalled_body_gets_a_json_408_and_the_app_never_runs():
    first = [{"type": "http.request", "body": b"a", "more_body": True}]
    sent = run(app(timeout=0.1), scope(), first, stall=True)
    status, headers, body = answer(sent)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert headers["Connection"] == "close" and headers["X-Request-ID"]


@pytest.mark.parametrize("declared", [True, False])
def test_over_the_cap_is_413_declared_or_not(declared):
    headers = [(b"content-length", b"500")] if declared else []
    messages = [{"type": "http.request", "body": b"x" * 60, "more_body": True}] * 3
    status, _, body = answer(run(app(cap=100), scope(headers=headers), list(messages), stall=True))
    assert status == 413 and body["error"]["code"] == "too_large"


def test_a_client_that_goes_away_gets_nothing():
    assert run(app(), scope(), [{"type": "http.request", "body": b"a", "more_body": True}]) == []


def test_healthz_is_answered_without_reading_or_threads():
    status, _, body = answer(run(app(), scope("/healthz", method="GET"), [], stall=True))
    assert status == 200 and body == {"status": "ok"}


def test_environ_path_is_percent_decoded_utf8_as_latin1_like_pep_3333():
    environ = wsgi_environ(
        {**scope(), "path": "/v1/models/é x", "raw_path": b"/v1/models/%C3%A9%20x"}, b""
    )
    assert environ["PATH_INFO"] == "/v1/models/é x".encode().decode("latin-1")
    assert environ["SERVER_PORT"] == "9696" and environ["REMOTE_ADDR"] == "127.0.0.1"


def test_an_over_long_body_is_drained_before_the_413_so_the_client_reads_it():
    messages = [{"type": "http.request", "body": b"x" * 60, "more_body": True} for _ in range(5)]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    status, _, _ = answer(run(app(cap=100), scope(), messages))
    assert status == 413 and messages == []  # everything the client sent was read


def test_a_refused_caller_gets_the_answer_before_its_body_is_taken_in():
    def admit(method, authorization):
        if authorization == "Bearer ok":
            return None
        return UnauthorizedError("no", headers={"WWW-Authenticate": "B"})

    def never(environ, start_response):
        raise AssertionError("the WSGI app must not run for a refused caller")

    guarded = BufferedWsgi(never, threads=1, body_timeout_s=1, max_body_bytes=lambda p: 10**9,
                           admit=admit)  # fmt: skip
    chunk = {"type": "http.request", "body": b"x" * 1000, "more_body": True}
    messages = [dict(chunk) for _ in range(3)] + [{"type": "http.request", "body": b""}]
    status, headers, body = answer(run(guarded, scope(), messages))
    assert status == 401 and headers["WWW-Authenticate"] == "B"
    assert body["error"]["code"] == "unauthorized"
    allowed = BufferedWsgi(echo_app, threads=1, body_timeout_s=1, max_body_bytes=lambda p: 100,
                           admit=admit)  # fmt: skip
    ok = scope(headers=[(b"authorization", b"Bearer ok")])
    assert answer(run(allowed, ok, [{"type": "http.request", "body": b"hi"}]))[0] == 201
