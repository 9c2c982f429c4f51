"""gateway.fetch: redirects re-checked hop by hop (and DNS rebinding), and the fetches that must
work (private deployments, content types, statuses). Servers: ssrf_servers.py; fixtures:
conftest.py."""

from __future__ import annotations

import socket

import pytest

from ct_contract.preprocess import load_model_input
from gateway import fetch
from tests.gateway.ssrf_servers import (
    PNG,
    PUBLIC_STAND_IN,
    SECRET,
    answer,
    make_settings,
    png_bytes,
    redirect_to,
    refused,
    url_of,
    with_port,
)

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
    server = serve(redirect_to(with_port(location, port) + f"?token={SECRET}"), PUBLIC_STAND_IN)
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
