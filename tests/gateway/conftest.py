"""Fixtures of the gateway lane: for the gateway.fetch SSRF tests (test_ssrf*.py) the canary,
loopback servers, a policy that calls one loopback address public and a fake resolver (servers in
ssrf_servers.py); for the log tests, `captured`: the gateway's JSON log lines in a buffer."""

from __future__ import annotations

import io
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import pytest

from gateway import fetch
from gateway.observability import logs
from tests.gateway.ssrf_servers import (
    PUBLIC_STAND_IN,
    Route,
    RouteHandler,
    Server,
    Server6,
    start_canary,
)


@pytest.fixture
def canary(canary_servers) -> tuple[int, list[str]]:
    """(port, hits): the module's canary, its hits counted from this test's start only."""
    port, hits = canary_servers
    hits.clear()
    return port, hits


@pytest.fixture(scope="module")
def canary_servers() -> Iterator[tuple[int, list[str]]]:
    """(port, hits): a server on 127.0.0.1:port and [::1]:port counting every connection."""
    hits: list[str] = []
    try:
        servers = start_canary(hits)
    except OSError as exc:
        pytest.fail(str(exc))
    yield servers[0].server_address[1], hits
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """serve(route, host='127.0.0.1', port=0, tls=None) -> a running HTTP server; stopped after."""
    started: list[Server] = []

    def start(
        route: Route, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> Server:
        server_class = Server6 if ":" in host else Server
        server = server_class((host, port), RouteHandler)
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        server.route = route
        server.seen = []
        started.append(server)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.fixture
def public_stand_in(monkeypatch) -> None:
    """Treat PUBLIC_STAND_IN as a public address; every other address keeps the real policy."""
    real = fetch.address_allowed

    def allowed(ip, allow_private: bool) -> bool:
        return ip == ipaddress.ip_address(PUBLIC_STAND_IN) or real(ip, allow_private)

    monkeypatch.setattr(fetch.policy, "address_allowed", allowed)


@pytest.fixture
def fake_dns(monkeypatch) -> dict[str, list[str]]:
    """Names -> answers for fetch.resolve_host; a name not listed does not resolve."""
    table: dict[str, list[str]] = {}

    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(table[host])

    monkeypatch.setattr(fetch.policy, "resolve_host", resolve)
    return table


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The gateway logger tree writing JSON into a buffer; restored afterwards."""
    logger = logging.getLogger("gateway")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    stream = io.StringIO()
    logs.configure("DEBUG", stream)
    yield stream
    logger.handlers[:], logger.level, logger.propagate = saved
