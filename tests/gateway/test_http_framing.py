"""HTTP framing against the real gateway process (gunicorn + gateway/server.py) on loopback:
the request-head deadline (CT_HEADER_TIMEOUT_S), Content-Length with Transfer-Encoding refused
and the connection closed (no smuggled request answered), and a fuzz test of framing: never a
500, never a hang, conflicting framing refused."""

from __future__ import annotations

import json
import re
import select
import socket
import time
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from tests.fixtures.common import free_port, fuzz_settings
from tests.fixtures.gateway import running_gateway

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
# Every connection must be closed by then: a head deadline, a body deadline, and slack.
CLOSED_WITHIN_S = HEADER_TIMEOUT_S + BODY_TIMEOUT_S + 3.0
SMUGGLED = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@dataclass
class Answer:
    status: int
    head: bytes
    body: bytes


@dataclass
class Exchange:
    answers: list[Answer]
    closed: bool  # the server closed the connection
    seconds: float  # until it did (or until we stopped waiting)
    rest: bytes  # bytes that were no whole answer


@pytest.fixture(scope="module")
def gateway():
    """No model server behind it: framing is all these tests look at."""
    env = {
        "CT_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "CT_REQUEST_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "CT_GRPC_DEADLINE_S": "1",
    }
    with running_gateway(f"127.0.0.1:{free_port()}", wait_for="/healthz", **env) as gw:
        yield gw


def parse_answers(data: bytes) -> tuple[list[Answer], bytes]:
    """The whole answers in `data` (Content-Length or chunked bodies), and what is left."""
    answers = []
    while b"\r\n\r\n" in data:
        head, rest = data.split(b"\r\n\r\n", 1)
        if re.search(rb"(?im)^transfer-encoding: *chunked\r?$", head):
            body, rest = _dechunk(rest)
        else:
            length = re.search(rb"(?im)^content-length: *(\d+)\r?$", head)
            size = int(length.group(1)) if length else 0
            body, rest = (rest[:size], rest[size:]) if len(rest) >= size else (None, rest)
        if body is None:
            break
        answers.append(Answer(int(head.split(b" ", 2)[1]), head, body))
        data = rest
    return answers, data


def _dechunk(data: bytes) -> tuple[bytes | None, bytes]:
    body = b""
    while b"\r\n" in data:
        size_line, rest = data.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if len(rest) < size + 2:
            break
        if size == 0:
            return body, rest[2:]
        body, data = body + rest[:size], rest[size + 2 :]
    return None, data


def exchange(
    port: int, *pieces: bytes, pause: float = 0.0, wait: float = CLOSED_WITHIN_S, hush: bool = True
):
    """Send `pieces` (`pause` s apart; `hush`: stop once the server speaks), then read until the
    server closes or `wait` s have passed since the start."""
    started = time.monotonic()
    data, closed = b"", False
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for piece in pieces:
            sock.sendall(piece)
            if select.select([sock], [], [], pause)[0] and hush:
                break  # an answer, or the close: stop sending
        while time.monotonic() - started < wait:
            sock.settimeout(max(0.01, wait - (time.monotonic() - started)))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                closed = True
                break
            data += chunk
    answers, rest = parse_answers(data)
    return Exchange(answers, closed, time.monotonic() - started, rest)


def error_code(answer: Answer) -> str:
    return json.loads(answer.body)["error"]["code"]


# ----------------------------------------------------------------------------- head deadline


def test_a_connection_that_sends_nothing_is_closed_at_the_head_deadline(gateway):
    result = exchange(gateway.port, wait=HEADER_TIMEOUT_S + 4)
    print(f"\nsilent connection closed after {result.seconds:.2f} s")
    assert result.closed and result.answers == [] and result.rest == b""
    assert HEADER_TIMEOUT_S * 0.9 <= result.seconds < HEADER_TIMEOUT_S + 1.5


def test_a_head_that_never_ends_gets_a_json_408_and_is_closed(gateway):
    drip = [b"GET /healthz HTTP/1.1\r\nHost: x\r\n"] + [b"X-Drip: 1\r\n"] * 40
    result = exchange(gateway.port, *drip, pause=0.1, wait=HEADER_TIMEOUT_S + 4)
    print(f"\nheaders dripped every 0.1 s: closed after {result.seconds:.2f} s")
    assert result.closed and result.seconds < HEADER_TIMEOUT_S + 1.5
    assert [a.status for a in result.answers] == [408]
    assert error_code(result.answers[0]) == "request_timeout"
    assert b"connection: close" in result.answers[0].head.lower()


def test_the_deadline_holds_for_the_next_request_on_a_kept_alive_connection(gateway):
    result = exchange(gateway.port, SMUGGLED, b"GET /healthz HTTP/1.1\r\nHo", pause=0.2, hush=False)
    assert [a.status for a in result.answers] == [200, 408]
    assert result.closed and result.seconds < HEADER_TIMEOUT_S + 2


def test_a_slow_head_within_the_deadline_is_answered(gateway):
    pieces = [b"GET /healthz HT", b"TP/1.1\r\nHost: x\r\n", b"Connection: close\r\n\r\n"]
    result = exchange(gateway.port, *pieces, pause=HEADER_TIMEOUT_S / 4)
    assert [a.status for a in result.answers] == [200]


# ----------------------------------------------------------------------------- smuggling


def smuggling_request(path: bytes = b"/v1/models/nope:predict") -> bytes:
    """A chunked body that ends at once, then a second request; Content-Length spans both, so a
    proxy that trusts Content-Length sees one request and the gateway (chunked) would see two."""
    body = b"0\r\n\r\n" + SMUGGLED
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + body
    )


@pytest.mark.parametrize("path", [b"/v1/models/nope:predict", b"/healthz"])
def test_length_and_chunked_together_are_refused_and_the_smuggled_request_is_not_answered(
    gateway, path
):
    result = exchange(gateway.port, smuggling_request(path))
    assert len(result.answers) == 1, result  # the smuggled GET /healthz got no answer
    assert result.answers[0].status == 400
    assert error_code(result.answers[0]) == "bad_http_request"
    assert result.closed and result.seconds < 1.0  # closed at once, not at a deadline
    assert b"connection: close" in result.answers[0].head.lower()


# ----------------------------------------------------------------------------- fuzz

LENGTH_VALUES = ["{n}", "{n}", "0", "{m}", "-1", "+{n}", " {n} ", "{n}, {n}", "{n}, {m}", "0x10"]
LENGTH_VALUES += ["99999999999999999999", "1e3", ""]
CHUNKED_VALUES = ["chunked", "Chunked", " chunked", "gzip, chunked", "chunked, gzip", "identity"]
CHUNKED_VALUES += ["chunked, chunked", "x"]
NAMES = {"cl": ["Content-Length", "content-length", "CONTENT-LENGTH", "Content-Length "]}
NAMES["te"] = ["Transfer-Encoding", "transfer-encoding", "Transfer-Encoding "]
BODIES = [b"", b"{}", b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\n", b"5;x=1\r\nhello\r\n0\r\n\r\n"]
BODIES += [b"zz\r\n", b"5\r\nhel", b"3\r\nabc\r\n", b"0\r\n\r\n" + SMUGGLED]


@st.composite
def framed_requests(draw) -> tuple[bytes, bool]:
    """(raw request, whether its framing conflicts: Content-Length with Transfer-Encoding, or two
    different lengths), from header combinations, duplicates, obs-folds and odd line ends."""
    method = draw(st.sampled_from([b"POST", b"GET", b"PUT"]))
    path = draw(st.sampled_from([b"/v1/models/nope:predict", b"/healthz", b"/v1/models"]))
    body = draw(st.sampled_from(BODIES))
    n, m = len(body), len(body) + draw(st.integers(1, 9))
    headers: list[tuple[str, str, str]] = []  # (kind, name, value)
    for _ in range(draw(st.integers(0, 2))):
        value = draw(st.sampled_from(LENGTH_VALUES)).format(n=n, m=m)
        headers.append(("cl", draw(st.sampled_from(NAMES["cl"])), value))
    for _ in range(draw(st.integers(0, 2))):
        headers.append(
            ("te", draw(st.sampled_from(NAMES["te"])), draw(st.sampled_from(CHUNKED_VALUES)))
        )
    headers.append(("other", "X-Other", draw(st.sampled_from(["a", "", "a\r\n b", "\x00"]))))
    headers = draw(st.permutations(headers))
    fold = draw(st.booleans())  # obs-fold: a value continued on the next line
    eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: x"]
    for _kind, name, value in headers:
        if fold and value:
            lines += [f"{name}:".encode(), f" {value}".encode()]
        else:
            lines.append(f"{name}: {value}".encode("latin-1"))
    raw = eol.join(lines) + eol + eol + body
    kinds = {k for k, name, _ in headers if not name.endswith(" ")}
    lengths = {p.strip() for k, _, v in headers if k == "cl" for p in v.split(",")}
    conflicting = {"cl", "te"} <= kinds or len(lengths) > 1
    return raw, conflicting


@given(request=framed_requests())
@fuzz_settings(40, [HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_fuzz_framing_never_500_never_hangs_conflicts_refused(gateway, request):
    raw, conflicting = request
    result = exchange(gateway.port, raw)
    statuses = [a.status for a in result.answers]
    assert result.closed, (raw, statuses, "still open")  # never a hang
    assert all(s < 500 or s in (502, 503, 504) for s in statuses), (raw, statuses)
    for answer in result.answers:
        if answer.body:
            json.loads(answer.body)  # every answer is JSON, errors included
    if conflicting:
        assert statuses == [400], (raw, statuses)
