"""Loopback servers and helpers for the gateway.fetch SSRF tests (test_ssrf*.py).

The canary listens on 127.0.0.1 and ::1 (same port) and answers every connection with a valid PNG,
so a fetch that wrongly went through would succeed and be counted. Tests that need a "public" host
on this machine treat exactly PUBLIC_STAND_IN as public (a narrow patch of the policy, the
`public_stand_in` fixture in conftest.py) and leave the real policy in force for every other
address, the canary's included.
"""

from __future__ import annotations

import dataclasses
import http.server
import io
import socket
import socketserver
import threading
from collections.abc import Callable

import pytest
from PIL import Image

from gateway import fetch
from gateway.config import Settings
from gateway.errors import ApiError

PUBLIC_STAND_IN = "127.0.0.3"  # the one loopback address the patched policy calls public
SECRET = "s3cr3t-token"


def png_bytes(size: tuple[int, int] = (7, 5)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


PNG = png_bytes()


def make_settings(**changes) -> Settings:
    base = Settings(models=("brain-stroke",), default_task="brain-stroke")
    fields = dict(
        url_allow_private=False, url_timeout_s=2.0, url_max_redirects=3, max_request_bytes=100_000
    )
    fields.update(changes)
    return dataclasses.replace(base, **fields)


class CanaryServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, family: int, hits: list[str]) -> None:
        self.address_family = family
        self.hits = hits
        super().__init__(address, CanaryHandler)


class CanaryHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.server.hits.append(str(self.client_address))
        self.request.settimeout(2)
        try:
            self.rfile.readline()
            head = f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(PNG)}\r\n"
            self.wfile.write(head.encode() + b"Connection: close\r\n\r\n" + PNG)
        except OSError:
            pass


Route = Callable[[http.server.BaseHTTPRequestHandler], None]


class RouteHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.seen.append({"path": self.path, "host": self.headers.get("Host")})
        self.server.route(self)

    def log_message(self, *args) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class Server6(Server):
    address_family = socket.AF_INET6


def answer(
    handler,
    status: int = 200,
    body: bytes = PNG,
    content_type: str | None = "image/png",
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    if content_type is not None:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def redirect_to(location: str) -> Route:
    return lambda h: answer(h, 302, b"", None, {"Location": location})


def with_port(template: str, port: int) -> str:
    return template.replace("{port}", str(port))


def url_of(server: Server, path: str = "/img.png") -> str:
    host, port = server.server_address[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}{path}"


def refused(url: str, settings: Settings | None = None) -> ApiError:
    with pytest.raises(ApiError) as info:
        fetch.fetch_image(url, settings or make_settings())
    return info.value


def start_canary(hits: list[str]) -> list[CanaryServer]:
    """Canary servers on 127.0.0.1:port and [::1]:port (one port), serving; appending to `hits`."""
    for _ in range(20):
        v4 = CanaryServer(("127.0.0.1", 0), socket.AF_INET, hits)
        port = v4.server_address[1]
        try:
            v6 = CanaryServer(("::1", port), socket.AF_INET6, hits)
            break
        except OSError:
            v4.server_close()
    else:
        raise OSError("no port free on both 127.0.0.1 and ::1 for the canary")
    servers = [v4, v6]
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return servers
