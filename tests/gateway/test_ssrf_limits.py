"""gateway.fetch: the byte cap, one deadline over DNS, connects and every hop, broken answers,
https (SNI, certificate checks), and no secret of a URL in logs or errors. Servers:
ssrf_servers.py; fixtures: conftest.py."""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from gateway import fetch
from tests.gateway.ssrf_servers import (
    PNG,
    PUBLIC_STAND_IN,
    SECRET,
    Route,
    answer,
    make_settings,
    redirect_to,
    refused,
    url_of,
)

# ----------------------------------------------------------------------------- size and time


def test_declared_length_over_the_cap_is_413_before_the_body(serve) -> None:
    def route(h) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Content-Length", str(50 * 1024 * 1024))
        h.end_headers()
        h.wfile.write(b"\0" * 1000)

    server = serve(route)
    error = refused(url_of(server), make_settings(url_allow_private=True, max_request_bytes=5000))
    assert (error.status, error.code) == (413, "url_too_large")


def test_endless_chunked_body_is_cut_at_the_cap(serve) -> None:
    sent = []

    def route(h) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"\xff" * 8192
        try:
            for _ in range(100_000):  # 800 MB if nobody stops reading
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent.append(len(chunk))
        except OSError:
            pass

    server = serve(route)
    error = refused(
        url_of(server), make_settings(url_allow_private=True, max_request_bytes=100_000)
    )
    assert (error.status, error.code) == (413, "url_too_large")
    # The fetch read at most what the server managed to send: far from the 800 MB on offer
    # (the rest is what socket buffers took in before the connection was dropped).
    assert sum(sent) < 64 * 1024 * 1024


def test_body_exactly_at_the_cap_is_accepted(serve) -> None:
    body = b"\x89PNG" + b"\0" * 996
    server = serve(lambda h: answer(h, body=body))
    assert (
        fetch.fetch_image(
            url_of(server), make_settings(url_allow_private=True, max_request_bytes=1000)
        )
        == body
    )


def _trickle(head: bytes, body_bytes: int, pause: float) -> Route:
    def route(h) -> None:
        try:
            for byte in head:
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
                time.sleep(pause)
            for _ in range(body_bytes):
                h.wfile.write(b"\0")
                h.wfile.flush()
                time.sleep(pause)
        except OSError:
            pass

    return route


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"


# Each server would take far longer than the deadline to finish (the trickles: a byte every 20 ms,
# so no single read ever waits long; 68 s and 2000 s in all), and the silent one ends with a broken
# answer (422) after 5 s. A 504 therefore shows that one deadline covers the whole fetch; the
# elapsed time is bounded below by the deadline only, as a loaded machine can only make it later.
DEADLINE_S = 0.8


@pytest.mark.parametrize(
    "name, route",
    [
        ("trickled body", lambda: _trickle(HEAD, 100_000, 0.02)),
        ("trickled headers", lambda: _trickle(HEAD * 50, 0, 0.02)),
        ("silent server", lambda: lambda h: time.sleep(5)),
    ],
)
def test_total_deadline_is_respected(name, route, serve) -> None:
    server = serve(route())
    started = time.monotonic()
    error = refused(url_of(server), make_settings(url_allow_private=True, url_timeout_s=DEADLINE_S))
    elapsed = time.monotonic() - started
    assert (error.status, error.code) == (504, "url_timeout"), f"{name}: {error.message}"
    assert elapsed >= DEADLINE_S, f"{name}: gave up after {elapsed:.2f} s, before the deadline"


def test_slow_dns_is_cut_at_the_deadline(monkeypatch) -> None:
    """The resolver answers after 30 s (in a daemon thread nobody waits for): a fetch back well
    before that, with url_timeout, was cut by its 0.5 s deadline."""
    monkeypatch.setattr(
        fetch.policy, "resolve_host", lambda host, port: time.sleep(30) or ["1.1.1.1"]
    )
    started = time.monotonic()
    error = refused("http://slow-dns.example.com/a.png", make_settings(url_timeout_s=0.5))
    assert error.code == "url_timeout" and time.monotonic() - started < 15


def test_deadline_covers_all_redirect_hops(serve) -> None:
    def route(h) -> None:
        time.sleep(0.3)
        redirect_to(f"/{int(h.path.strip('/')) + 1}")(h)

    server = serve(route)
    error = refused(
        url_of(server, "/0"),
        make_settings(url_allow_private=True, url_timeout_s=0.8, url_max_redirects=10),
    )
    # Every hop answers within 0.3 s, so only a deadline over all hops ends the chain with a
    # timeout (a deadline per hop would follow all 10 and refuse too many redirects instead).
    assert error.code == "url_timeout", error.code


def test_connection_refused_is_422() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        error = refused(f"http://127.0.0.1:{port}/", make_settings(url_allow_private=True))
    assert (error.status, error.code) == (422, "url_unreachable")


def test_unresolvable_name_is_422(fake_dns) -> None:
    error = refused("http://no-such-host.example.com/a.png")
    assert (error.status, error.code) == (422, "url_unreachable")


@pytest.mark.parametrize(
    "reply",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 999999 What\r\n\r\n",
        b"",
        b"\x16\x03\x01\x00\x05hello",
        b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 50\r\n\r\nshort",
    ],
)
def test_broken_http_answers_are_422(reply: bytes, serve) -> None:
    def route(h) -> None:
        h.wfile.write(reply)
        h.close_connection = True

    server = serve(route)
    error = refused(url_of(server), make_settings(url_allow_private=True))
    assert (error.status, error.code) == (422, "url_unreachable"), error.message


# ----------------------------------------------------------------------------- https


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory) -> dict[str, str]:
    """A throwaway CA and a server certificate for images.test, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    d = tmp_path_factory.mktemp("ca")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=ct-triage test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=images.test",
    )
    (d / "ext.cnf").write_text("subjectAltName=DNS:images.test\n")
    run(
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    return {name: str(d / name) for name in ("ca.pem", "srv.pem", "srv.key")}


def test_https_uses_sni_and_verifies_the_certificate(test_ca, serve, fake_dns, monkeypatch) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(test_ca["srv.pem"], test_ca["srv.key"])
    names: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: names.append(name)
    server = serve(lambda h: answer(h), tls=server_ctx)
    port = server.server_address[1]
    fake_dns.update({"images.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    allow = make_settings(url_allow_private=True)

    error = refused(f"https://images.test:{port}/a.png", allow)  # system CAs do not know ours
    assert (error.status, error.code) == (422, "url_unreachable")

    def trusting() -> ssl.SSLContext:
        return ssl.create_default_context(cafile=test_ca["ca.pem"])

    monkeypatch.setattr(fetch.transport, "tls_context", trusting)
    assert fetch.fetch_image(f"https://images.test:{port}/a.png", allow) == PNG
    assert names[-1] == "images.test"
    assert server.seen[-1]["host"] == f"images.test:{port}"
    error = refused(f"https://other.test:{port}/a.png", allow)  # certificate names images.test
    assert (error.status, error.code) == (422, "url_unreachable")
    assert names[-1] == "other.test"


# ----------------------------------------------------------------------------- no secrets out


def test_query_strings_never_reach_logs_or_errors(serve, public_stand_in, canary) -> None:
    port, hits = canary
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("gateway.fetch")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        ok = serve(lambda h: answer(h), PUBLIC_STAND_IN)
        fetch.fetch_image(url_of(ok, f"/a.png?token={SECRET}"), make_settings())
        bad = serve(redirect_to(f"http://127.0.0.1:{port}/?token={SECRET}"), PUBLIC_STAND_IN)
        error = refused(url_of(bad, f"/b.png?token={SECRET}"))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert records, "the fetch logs something"
    for record in records:
        assert SECRET not in record.getMessage() and SECRET not in str(vars(record))
    assert SECRET not in error.message and hits == []
