"""gateway.fetch against hostile URLs: real loopback servers, a canary that must never be reached.

The canary listens on 127.0.0.1 and ::1 (same port) and answers every connection with a valid PNG,
so a fetch that wrongly went through would succeed and be counted. Tests that need a "public" host
on this machine treat exactly 127.0.0.3 as public (a narrow patch of the policy) and leave the real
policy in force for every other address, the canary's included.
"""

from __future__ import annotations

import dataclasses
import http.server
import io
import ipaddress
import logging
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from PIL import Image

from ct_contract.preprocess import load_model_input
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


# ----------------------------------------------------------------------------- servers


class _Canary(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, family: int, hits: list[str]) -> None:
        self.address_family = family
        self.hits = hits
        super().__init__(address, _CanaryHandler)


class _CanaryHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.server.hits.append(str(self.client_address))
        self.request.settimeout(2)
        try:
            self.rfile.readline()
            head = f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(PNG)}\r\n"
            self.wfile.write(head.encode() + b"Connection: close\r\n\r\n" + PNG)
        except OSError:
            pass


@pytest.fixture(scope="module")
def canary() -> Iterator[tuple[int, list[str]]]:
    """(port, hits): a server on 127.0.0.1:port and [::1]:port counting every connection."""
    hits: list[str] = []
    for _ in range(20):
        v4 = _Canary(("127.0.0.1", 0), socket.AF_INET, hits)
        port = v4.server_address[1]
        try:
            v6 = _Canary(("::1", port), socket.AF_INET6, hits)
            break
        except OSError:
            v4.server_close()
    else:
        pytest.fail("no port free on both 127.0.0.1 and ::1 for the canary")
    servers = [v4, v6]
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield port, hits
    for server in servers:
        server.shutdown()
        server.server_close()


Route = Callable[[http.server.BaseHTTPRequestHandler], None]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.seen.append({"path": self.path, "host": self.headers.get("Host")})
        self.server.route(self)

    def log_message(self, *args) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


@pytest.fixture
def serve() -> Iterator[Callable[..., _Server]]:
    """serve(route, host='127.0.0.1', port=0, tls=None) -> a running HTTP server; stopped after."""
    started: list[_Server] = []

    def start(
        route: Route, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> _Server:
        server_class = _Server6 if ":" in host else _Server
        server = server_class((host, port), _Handler)
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


def url_of(server: _Server, path: str = "/img.png") -> str:
    host, port = server.server_address[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}{path}"


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


def refused(url: str, settings: Settings | None = None) -> ApiError:
    with pytest.raises(ApiError) as info:
        fetch.fetch_image(url, settings or make_settings())
    return info.value


# ----------------------------------------------------------------------------- the SSRF table

# Each spelling names the canary (127.0.0.1 / ::1 / the local host) or another non-public address.
FORBIDDEN_HOSTS = [
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "127.0.0.1.",
    "2130706433",
    "0x7f000001",
    "0x7F000001",
    "0x7f.1",
    "0x7f.0x0.0x0.0x1",
    "0177.0.0.1",
    "0177.0000.0000.0001",
    "017700000001",
    "127.000.000.001",
    "127.0.0.2",
    "127.255.255.254",
    "0.0.0.0",
    "0",
    "0x0",
    "0.0.0.0.",
    "\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11",  # full-width 127.0.0.1
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "100.127.255.254",
    "169.254.169.254",
    "169.254.0.1",
    "0xa9fea9fe",
    "2852039166",
    "192.0.0.170",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "192.88.99.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[0000:0000:0000:0000:0000:0000:0000:0001]",
    "[::0001]",
    "[::]",
    "[::0]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
    "[::FFFF:127.0.0.1]",
    "[::ffff:0.0.0.0]",
    "[::ffff:169.254.169.254]",
    "[::ffff:10.0.0.1]",
    "[::ffff:192.168.0.1]",
    "[::127.0.0.1]",
    "[::7f00:1]",
    "[::10.0.0.1]",
    "[64:ff9b::127.0.0.1]",
    "[64:ff9b::7f00:1]",
    "[64:ff9b::a9fe:a9fe]",
    "[64:ff9b:1::1]",
    "[2002:7f00:1::]",
    "[2002:7f00:0001::1]",
    "[2002:a9fe:a9fe::]",
    "[2002:0a00:0001::1]",
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",  # Teredo, client 127.0.0.1 (xor-ed)
    "[2001::1]",
    "[2001:db8::1]",
    "[fe80::1]",
    "[febf::1]",
    "[fec0::1]",
    "[fc00::1]",
    "[fd00:ec2::254]",  # AWS IMDS over IPv6
    "[ff02::1]",
    "[ff05::2]",
    "[100::1]",
    "[::ffff:0:127.0.0.1]",
    "localhost",
    "LOCALHOST",
    "localhost.",
    "LocalHost.",
    "foo.localhost",
    "a.b.localhost.",
    "ip6-localhost",
    "ip6-loopback",
    "metadata",
    "metadata.google.internal",
    "metadata.google.internal.",
    "kubernetes",
    "kubernetes.default.svc.cluster.local",
    "printer.local",
    "router.home.arpa",
    "host.localdomain",
]

# Accepted spellings that are not http(s) URLs to a checkable host: refused before any lookup.
FORBIDDEN_URLS = [
    "file:///etc/passwd",
    "file://localhost/etc/passwd",
    "FILE:///etc/passwd",
    "gopher://127.0.0.1:{port}/_GET%20/",
    "ftp://127.0.0.1:{port}/",
    "dict://127.0.0.1:{port}/",
    "ldap://127.0.0.1:{port}/",
    "sftp://127.0.0.1:{port}/",
    "tftp://127.0.0.1:{port}/x",
    "jar:http://127.0.0.1:{port}/!/",
    "netdoc:///etc/passwd",
    "javascript:alert(1)",
    "data:image/png;base64,iVBORw0KGgo=",
    "ws://127.0.0.1:{port}/",
    "wss://127.0.0.1:{port}/",
    "http://user:pass@127.0.0.1:{port}/",
    "http://user@example.com/",
    "http://:@example.com/",
    "http://example.com@127.0.0.1:{port}/",
    "http://127.0.0.1:{port}@example.com/",
    "https://user:pass@example.com/a.png",
    "http://a%40b@example.com/",
    "http://127.0.0.1:{port}#@example.com/",
]

MALFORMED_URLS = [
    "",
    " ",
    "127.0.0.1",
    "127.0.0.1:{port}",
    "//127.0.0.1:{port}/",
    "/img.png",
    "img.png",
    "http:/127.0.0.1:{port}/",
    "http:127.0.0.1:{port}/",
    "http:///127.0.0.1:{port}/",
    "http://",
    "http://:{port}/",
    "http://127.0.0.1:0/",
    "http://127.0.0.1:65536/",
    "http://127.0.0.1:-1/",
    "http://127.0.0.1:+80/",
    "http://127.0.0.1:80a/",
    "http://127.0.0.1:/",
    "http://127.0.0.1:0080080/",
    "http://127.0.0.1: 80/",
    "http://127.0.0.1:{port}:{port}/",
    "http://[::1/",
    "http://[::1]x/",
    "http://[::1]:/",
    "http://::1/",
    "http://[127.0.0.1]/",
    "http://[fe80::1%25lo]:{port}/",
    "http://[fe80::1%lo]:{port}/",
    "http://[v1.fe80::1]/",
    "http://%31%32%37.0.0.1:{port}/",
    "http://127.0.0.1\t:{port}/",
    "http://127.0.0.1\n.example.com/",
    "http://127.0.0.1\\@x.com/",
    "http://127.0.0.1:{port}\\x",
    "http:\\\\127.0.0.1\\",
    "http://127.0.0.1 /",
    "http://256.0.0.1/",
    "http://1.2.3.4.5/",
    "http://0x1g.0.0.1/",
    "http://08.0.0.1/",
    "http://4294967296/",
    "http://1.16777216/",
    "http://1.1.65536/",
    "http://127..1/",
    "http://exa mple.com/",
    "http://-bad-.example.com/",
    "http://a..b.com/",
    "http://" + "a" * 64 + ".com/",
    "http://x.com/" + "a" * 5000,
    "http://\x00.com/",
    "http://example.com\x7f/",
]


def _url(template: str, port: int) -> str:
    return template.replace("{port}", str(port))


@pytest.mark.parametrize("host", FORBIDDEN_HOSTS)
def test_non_public_host_is_refused(host: str, canary) -> None:
    port, hits = canary
    error = refused(f"http://{host}:{port}/img.png?token={SECRET}")
    assert (error.status, error.code) == (400, "url_forbidden"), error.message
    assert SECRET not in error.message
    assert hits == []


@pytest.mark.parametrize("template", FORBIDDEN_URLS)
def test_scheme_and_credentials_are_refused(template: str, canary) -> None:
    port, hits = canary
    error = refused(_url(template, port))
    assert error.status == 400 and error.code in ("url_forbidden", "url_invalid"), error.message
    assert hits == []


@pytest.mark.parametrize("template", MALFORMED_URLS)
def test_malformed_url_is_refused(template: str, canary) -> None:
    port, hits = canary
    error = refused(_url(template, port))
    assert error.status == 400 and error.code in ("url_invalid", "url_forbidden"), error.message
    assert hits == []


def test_private_deployment_still_refuses_schemes_and_credentials(canary) -> None:
    port, hits = canary
    allow = make_settings(url_allow_private=True)
    for template in (
        "file:///etc/passwd",
        "gopher://127.0.0.1:{port}/",
        "http://u:p@127.0.0.1:{port}/",
        "http://[::1/",
        "http://0.0.0.0:{port}/",
        "http://[::]:{port}/",
        "http://224.0.0.1:{port}/",
    ):
        assert refused(_url(template, port), allow).status == 400
    assert hits == []


@pytest.mark.parametrize(
    "answers",
    [
        ["127.0.0.1"],
        ["::1"],
        ["10.1.2.3"],
        ["169.254.169.254"],
        ["::ffff:127.0.0.1"],
        ["fe80::1%lo"],
        ["93.184.216.34", "127.0.0.1"],
        ["2606:2800:220:1::1", "::1"],
        ["0.0.0.0"],
        ["100.64.1.1"],
        ["not-an-address"],
    ],
)
def test_name_resolving_to_any_non_public_address_is_refused(answers, fake_dns, canary) -> None:
    port, hits = canary
    fake_dns["images.example.com"] = answers
    error = refused(f"http://images.example.com:{port}/a.png")
    assert (error.status, error.code) == (400, "url_forbidden")
    assert "127.0.0.1" not in error.message and "169.254" not in error.message
    assert hits == []


def test_canary_counts_a_real_fetch(canary) -> None:
    """Control: the canary is reachable and counts, so its zero counts above mean something."""
    port, hits = canary
    before = len(hits)
    body = fetch.fetch_image(f"http://127.0.0.1:{port}/x", make_settings(url_allow_private=True))
    assert body == PNG and len(hits) == before + 1
    hits.clear()


def test_forbidden_table_counts() -> None:
    urls = [f"http://{h}:1/" for h in FORBIDDEN_HOSTS] + FORBIDDEN_URLS + MALFORMED_URLS
    print(
        f"SSRF table: {len(urls)} URL forms refused ({len(FORBIDDEN_HOSTS)} hosts, "
        f"{len(FORBIDDEN_URLS)} schemes/credentials, {len(MALFORMED_URLS)} malformed)"
    )
    assert len(set(urls)) == len(urls)


# ----------------------------------------------------------------------------- redirects


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:{port}/",
        "http://localhost:{port}/",
        "http://[::1]:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/",
        "http://2130706433:{port}/",
        "//127.0.0.1:{port}/x",
        "http://0:{port}/",
        "http://rebound.example.com:{port}/",
        "file:///etc/passwd",
        "http://u:p@127.0.0.1:{port}/",
        "gopher://127.0.0.1:{port}/",
    ],
)
def test_public_host_redirecting_to_forbidden_is_refused(
    location, serve, public_stand_in, fake_dns, canary
) -> None:
    port, hits = canary
    fake_dns["rebound.example.com"] = ["127.0.0.1"]
    server = serve(redirect_to(_url(location, port) + f"?token={SECRET}"), PUBLIC_STAND_IN)
    error = refused(url_of(server))
    assert error.status == 400 and error.code in ("url_forbidden", "url_invalid")
    assert SECRET not in error.message
    assert len(server.seen) == 1 and hits == []


def test_dns_rebinding_connects_to_the_checked_address(
    serve, public_stand_in, monkeypatch, canary
) -> None:
    """The resolver says public first, loopback after; the fetch must use the first answer only.

    The patch is on socket.getaddrinfo itself, so any second lookup anywhere (ours, http.client's,
    socket.create_connection's) would get 127.0.0.1 and reach the canary on the same port.
    """
    port, hits = canary
    server = serve(lambda h: answer(h), PUBLIC_STAND_IN, port)
    real_getaddrinfo = socket.getaddrinfo
    calls: list[str] = []

    def rebinding(host, *args, **kwargs):
        if host == "rebind.example.com":
            calls.append(host)
            address = PUBLIC_STAND_IN if len(calls) == 1 else "127.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    assert fetch.fetch_image(f"http://rebind.example.com:{port}/a.png", make_settings()) == PNG
    assert calls == ["rebind.example.com"]
    assert server.seen[0]["host"] == f"rebind.example.com:{port}"
    assert hits == []


def test_redirects_within_the_cap_are_followed(serve) -> None:
    target = serve(lambda h: answer(h))
    hop2 = serve(redirect_to(url_of(target, "/final.png")))
    hop1 = serve(
        lambda h: (
            answer(h, 301, b"", None, {"Location": "/next"})
            if h.path == "/start"
            else redirect_to(url_of(hop2))(h)
        )
    )
    body = fetch.fetch_image(
        url_of(hop1, "/start"), make_settings(url_allow_private=True, url_max_redirects=3)
    )
    assert body == PNG
    assert [s["path"] for s in hop1.seen] == ["/start", "/next"]
    assert target.seen[0]["path"] == "/final.png"


def test_relative_location_is_resolved_against_the_current_url(serve) -> None:
    def route(h) -> None:
        if h.path == "/a/b/start":
            answer(h, 307, b"", None, {"Location": "../img.png?x=1"})
        else:
            answer(h)

    server = serve(route)
    assert fetch.fetch_image(url_of(server, "/a/b/start"), make_settings(url_allow_private=True))
    assert server.seen[-1]["path"] == "/a/img.png?x=1"


@pytest.mark.parametrize("cap, hops", [(0, 1), (3, 4), (2, 50)])
def test_redirect_cap(cap: int, hops: int, serve) -> None:
    def route(h) -> None:
        n = int(h.path.strip("/") or 0)
        redirect_to(f"/{n + 1}")(h) if n < hops else answer(h)

    server = serve(route)
    settings = make_settings(url_allow_private=True, url_max_redirects=cap)
    error = refused(url_of(server, "/0"), settings)
    assert (error.status, error.code) == (422, "url_too_many_redirects")
    assert len(server.seen) == cap + 1


def test_redirect_loop_stops_at_the_cap(serve) -> None:
    server = serve(redirect_to("/loop"))
    error = refused(url_of(server, "/loop"), make_settings(url_allow_private=True))
    assert error.code == "url_too_many_redirects" and len(server.seen) == 4


def test_redirect_without_location(serve) -> None:
    server = serve(lambda h: answer(h, 302, b"", None))
    error = refused(url_of(server), make_settings(url_allow_private=True))
    assert (error.status, error.code) == (422, "url_unreachable")


# ----------------------------------------------------------------------------- positive fetches


def test_fetches_a_real_image_from_a_private_deployment(serve) -> None:
    image = png_bytes((40, 30))
    server = serve(lambda h: answer(h, body=image))
    body = fetch.fetch_image(
        url_of(server, f"/scan.png?token={SECRET}"), make_settings(url_allow_private=True)
    )
    assert body == image
    assert load_model_input(body, 32, 3).shape == (32, 32, 3)
    assert server.seen[0]["path"] == f"/scan.png?token={SECRET}"


def test_localhost_name_and_ipv6_literal_allowed_privately(serve) -> None:
    server = serve(lambda h: answer(h))
    port = server.server_address[1]
    allow = make_settings(url_allow_private=True)
    assert fetch.fetch_image(f"http://localhost:{port}/a", allow) == PNG
    assert fetch.fetch_image(f"http://2130706433:{port}/a", allow) == PNG
    assert server.seen[-1]["host"] == f"127.0.0.1:{port}"
    v6 = serve(lambda h: answer(h), "::1")
    v6_port = v6.server_address[1]
    assert fetch.fetch_image(f"http://[0:0::1]:{v6_port}/a", allow) == PNG
    assert v6.seen[-1]["host"] == f"[::1]:{v6_port}"


@pytest.mark.parametrize(
    "content_type",
    [
        "image/png",
        "IMAGE/PNG",
        "image/jpeg; charset=binary",
        "application/octet-stream",
        "application/dicom",
        " image/tiff ",
    ],
)
def test_accepted_content_types(content_type: str, serve) -> None:
    server = serve(lambda h: answer(h, content_type=content_type))
    assert fetch.fetch_image(url_of(server), make_settings(url_allow_private=True)) == PNG


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "text/plain",
        "application/json",
        "application/x-image",
        "imagepng",
        "",
        None,
        "text/html; image/png",
        "multipart/x-mixed-replace; boundary=x",
    ],
)
def test_other_content_types_are_415(content_type, serve) -> None:
    server = serve(lambda h: answer(h, content_type=content_type))
    error = refused(url_of(server), make_settings(url_allow_private=True))
    assert (error.status, error.code) == (415, "unsupported_media_type")


@pytest.mark.parametrize("status", [201, 204, 304, 400, 401, 403, 404, 500, 503])
def test_non_ok_status_is_422(status: int, serve) -> None:
    server = serve(lambda h: answer(h, status, b""))
    error = refused(url_of(server, f"/x?token={SECRET}"), make_settings(url_allow_private=True))
    assert (error.status, error.code) == (422, "url_bad_status")
    assert str(status) in error.message and SECRET not in error.message


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
    started = time.monotonic()
    error = refused(
        url_of(server), make_settings(url_allow_private=True, max_request_bytes=100_000)
    )
    assert (error.status, error.code) == (413, "url_too_large")
    assert time.monotonic() - started < 2


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
    error = refused(url_of(server), make_settings(url_allow_private=True, url_timeout_s=0.8))
    elapsed = time.monotonic() - started
    assert (error.status, error.code) == (504, "url_timeout"), name
    assert 0.7 < elapsed < 1.5, f"{name}: {elapsed:.2f}s"


def test_slow_dns_is_cut_at_the_deadline(monkeypatch) -> None:
    monkeypatch.setattr(
        fetch.policy, "resolve_host", lambda host, port: time.sleep(3) or ["1.1.1.1"]
    )
    started = time.monotonic()
    error = refused("http://slow-dns.example.com/a.png", make_settings(url_timeout_s=0.5))
    assert error.code == "url_timeout" and time.monotonic() - started < 1.2


def test_deadline_covers_all_redirect_hops(serve) -> None:
    def route(h) -> None:
        time.sleep(0.3)
        redirect_to(f"/{int(h.path.strip('/')) + 1}")(h)

    server = serve(route)
    started = time.monotonic()
    error = refused(
        url_of(server, "/0"),
        make_settings(url_allow_private=True, url_timeout_s=0.8, url_max_redirects=10),
    )
    assert error.code == "url_timeout" and time.monotonic() - started < 1.5


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
