"""gateway.observability.logs: JSON lines, request ids, URL redaction; flask_hook's access line."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from flask import Flask

from gateway.config import Settings
from gateway.observability import flask_hook, logs


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_the_standard_fields(captured) -> None:
    log = logging.getLogger("gateway.test")
    log.info(
        "hello %s",
        "world",
        extra={"task": "brain-stroke", "status": 200, "latency_ms": 12.5, "bytes": 7},
    )
    log.warning('quotes " and\nnewlines', extra={"odd": object()})
    first, second = lines(captured)
    assert first["msg"] == "hello world" and first["level"] == "INFO"
    assert first["logger"] == "gateway.test"
    assert (first["task"], first["status"], first["latency_ms"], first["bytes"]) == (
        "brain-stroke",
        200,
        12.5,
        7,
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", first["ts"])
    assert "request_id" not in first
    assert second["msg"] == 'quotes " and\nnewlines' and second["odd"].startswith("<object")


def test_exceptions_are_one_line_too(captured) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("gateway.test").exception("failed")
    (entry,) = lines(captured)
    assert entry["level"] == "ERROR" and "ValueError: boom" in entry["exc"]


def test_configure_is_idempotent_and_respects_the_level(captured) -> None:
    logs.configure("WARNING", captured)
    logs.configure("WARNING", captured)
    log = logging.getLogger("gateway.test")
    log.info("hidden")
    log.warning("shown")
    assert [e["msg"] for e in lines(captured)] == ["shown"]


def test_bound_request_id_appears_on_every_line(captured) -> None:
    token = logs.bind_request_id("abc123")
    try:
        logging.getLogger("gateway.x").info("inside")
    finally:
        logs._request_id.reset(token)
    logging.getLogger("gateway.x").info("outside")
    inside, outside = lines(captured)
    assert inside["request_id"] == "abc123" and "request_id" not in outside


@pytest.mark.parametrize(
    "incoming, kept",
    [
        ("abc-123_DEF.9", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        (None, False),
        ("has space", False),
        ("x\r\nSet-Cookie: a=b", False),
        ("<script>", False),
        ("ü", False),
        ('{"json": 1}', False),
    ],
)
def test_incoming_request_ids_are_accepted_only_when_safe(incoming, kept) -> None:
    result = logs.accept_request_id(incoming)
    if kept:
        assert result == incoming
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", result)
    assert logs.accept_request_id(None) != logs.accept_request_id(None)


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://h.example/a/b.png?token=secret&x=1#frag", "https://h.example/a/b.png?<redacted>"),
        ("http://user:pw@h.example:8080/x?sig=1", "http://h.example:8080/x?<redacted>"),
        ("http://[::1]:9/p", "http://[::1]:9/p"),
        ("https://h.example/plain.png", "https://h.example/plain.png"),
        ("http://[::1/x?a=b", "<unparsable url>"),
        ("http://h:99999/x?a=b", "<unparsable url>"),
        ("/relative?q=1", "/relative?<redacted>"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert logs.redact_url(url) == expected


def test_redact_url_shortens_long_paths() -> None:
    out = logs.redact_url("http://h/" + "p" * 1000 + "?q=secret")
    assert "secret" not in out and len(out) < 230


def test_flask_hooks_set_and_log_the_request_id(captured) -> None:
    app = Flask("t")
    flask_hook.init_app(app, Settings(models=("brain-stroke",), default_task="brain-stroke"))

    @app.get("/v1/models/<task>")
    def show(task: str):
        logging.getLogger("gateway.view").info("in view")
        return {"task": task}

    client = app.test_client()
    given = client.get("/v1/models/brain-stroke", headers={"X-Request-ID": "req-42"})
    fresh = client.get("/v1/models/x", headers={"X-Request-ID": "bad id\x01"})
    assert given.headers["X-Request-ID"] == "req-42"
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["X-Request-ID"])
    view, access, _, access2 = lines(captured)
    assert view["request_id"] == "req-42" and view["msg"] == "in view"
    assert access["logger"] == "gateway.access" and access["request_id"] == "req-42"
    assert (access["method"], access["path"], access["status"], access["task"]) == (
        "GET",
        "/v1/models/brain-stroke",
        200,
        "brain-stroke",
    )
    assert access["latency_ms"] >= 0
    assert access2["request_id"] == fresh.headers["X-Request-ID"]
    assert logs.current_request_id() is None  # unbound after the request
