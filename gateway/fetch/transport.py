"""The pinned transport: GET a checked URL from a checked address under one deadline and a cap.

The connection goes to an address the policy already checked, with the original Host header and,
for https, SNI and certificate verification against the URL's hostname. One wall-clock deadline
covers DNS, connects, TLS, headers and body of all hops; the body is streamed under a byte cap.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urljoin

from gateway.errors import (
    UnsupportedMediaTypeError,
    UrlBadStatusError,
    UrlTooLargeError,
    UrlTooManyRedirectsError,
    UrlUnreachableError,
)
from gateway.fetch.policy import checked_addresses, timed_out
from gateway.fetch.url import IPAddress, Target, parse_url
from gateway.observability.logs import redact_url

log = logging.getLogger(__package__)  # "gateway.fetch", as before the package split

CHUNK_BYTES = 64 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
OK_STATUSES = frozenset({200, 203})
ACCEPTED_TYPES = (
    "application/octet-stream",
    "application/dicom",
    "application/zip",  # a series
    "application/x-zip-compressed",
)
USER_AGENT = "ct-triage-gateway/1"
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+/-]*$")


class FetchSettings(Protocol):
    url_allow_private: bool
    url_timeout_s: float
    url_max_redirects: int
    max_request_bytes: int


def tls_context() -> ssl.SSLContext:
    """Certificate and hostname verification on (tests replace this to trust a test CA)."""
    return ssl.create_default_context()


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP(S) connection to an already-checked IP that still speaks to `host` (Host, SNI, cert)."""

    def __init__(self, target: Target, ip: IPAddress, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.default_port = 443 if target.scheme == "https" else 80
        self._ip = ip
        self._tls = target.scheme == "https"
        self._killer: socket.socket | None = None

    def connect(self) -> None:
        family = socket.AF_INET6 if self._ip.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        self._killer = sock.dup()  # same connection: shutdown() on it unblocks any read
        try:
            sock.settimeout(self.timeout)
            sock.connect((str(self._ip), self.port))
            if self._tls:
                sock = tls_context().wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def kill(self) -> None:
        killer = self._killer
        if killer is not None:
            with contextlib.suppress(OSError):
                killer.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        super().close()
        if self._killer is not None:
            self._killer.close()
            self._killer = None


class _Watchdog:
    """Shuts the current connection down at the deadline, whatever call is blocked on it."""

    def __init__(self, deadline: float) -> None:
        self.fired = False
        self.conn: _PinnedConnection | None = None
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        if self.conn is not None:
            self.conn.kill()

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


@dataclass(frozen=True)
class _Answer:
    status: int
    location: str | None = None
    body: bytes = b""


def _connect(
    target: Target, addresses: list[IPAddress], deadline: float, watchdog: _Watchdog
) -> _PinnedConnection:
    last: Exception | None = None
    for ip in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise timed_out()
        conn = _PinnedConnection(target, ip, timeout=remaining)
        watchdog.conn = conn
        try:
            conn.connect()
            return conn
        except OSError as exc:
            conn.close()
            if isinstance(exc, TimeoutError) or watchdog.fired or time.monotonic() >= deadline:
                raise timed_out() from None
            if isinstance(exc, ssl.SSLError):
                reason = exc.reason or "error"
                raise UrlUnreachableError(f"TLS with the image host failed: {reason}") from None
            last = exc
    raise UrlUnreachableError("could not connect to the image URL's host") from last


def _request(target: Target, addresses: list[IPAddress], deadline: float, limit: int) -> _Answer:
    with _Watchdog(deadline) as watchdog:
        conn = _connect(target, addresses, deadline, watchdog)
        try:
            answer = _exchange(conn, target, limit, watchdog)
            if watchdog.fired:  # a read cut short by the watchdog looks like a clean EOF
                raise timed_out()
            return answer
        except (OSError, http.client.HTTPException) as exc:
            if watchdog.fired or time.monotonic() >= deadline or isinstance(exc, TimeoutError):
                raise timed_out() from None
            raise UrlUnreachableError("the image URL's host sent an invalid HTTP answer") from None
        finally:
            watchdog.conn = None
            conn.close()


def _exchange(conn: _PinnedConnection, target: Target, cap: int, watchdog: _Watchdog) -> _Answer:
    conn.putrequest("GET", target.request_target, skip_accept_encoding=True)
    conn.putheader("User-Agent", USER_AGENT)
    conn.putheader("Accept", "image/*, application/dicom, application/octet-stream")
    conn.putheader("Accept-Encoding", "identity")
    conn.putheader("Connection", "close")
    conn.endheaders()
    resp = conn.getresponse()
    if watchdog.fired:
        raise timed_out()
    if resp.status in REDIRECT_STATUSES:
        return _Answer(resp.status, location=resp.getheader("Location"))
    if resp.status not in OK_STATUSES:
        raise UrlBadStatusError(f"the image URL answered HTTP {resp.status}")
    _check_content_type(resp.getheader("Content-Type"))
    return _Answer(resp.status, body=_read_capped(resp, cap, watchdog))


def _check_content_type(value: str | None) -> None:
    media = (value or "").split(";", 1)[0].strip().lower()
    if media.startswith("image/") or media in ACCEPTED_TYPES:
        return
    shown = media[:60] if _MEDIA_TYPE.match(media) else "unreadable"
    raise UnsupportedMediaTypeError(
        f"the image URL's Content-Type is {shown or 'missing'}; expected image/*, "
        "application/dicom or application/octet-stream"
    )


def _too_large(cap: int) -> UrlTooLargeError:
    return UrlTooLargeError(f"the image at the URL is larger than {cap} bytes")


def _read_capped(resp: http.client.HTTPResponse, cap: int, watchdog: _Watchdog) -> bytes:
    declared = (resp.getheader("Content-Length") or "").strip()
    if declared.isdigit() and int(declared) > cap:
        raise _too_large(cap)
    chunks: list[bytes] = []
    total = 0
    while chunk := resp.read1(CHUNK_BYTES):
        total += len(chunk)
        if total > cap:
            raise _too_large(cap)
        if watchdog.fired:
            raise timed_out()
        chunks.append(chunk)
    if watchdog.fired:
        raise timed_out()
    if resp.length:  # read1 ends quietly when the server closes before Content-Length bytes
        raise http.client.IncompleteRead(b"", resp.length)
    return b"".join(chunks)


def fetch_image(url: str, settings: FetchSettings, limit: int | None = None) -> bytes:
    """GET an image from a client-supplied URL, following checked redirects. Raises ApiError.

    At most `limit` bytes (default: settings.max_request_bytes; a series allows more)."""
    limit = settings.max_request_bytes if limit is None else limit
    deadline = time.monotonic() + settings.url_timeout_s
    target = parse_url(url)
    for hop in range(settings.url_max_redirects + 1):
        addresses = checked_addresses(target, settings.url_allow_private, deadline)
        answer = _request(target, addresses, deadline, limit)
        if answer.status not in REDIRECT_STATUSES:
            extra = {"url": redact_url(target.url), "bytes": len(answer.body), "redirects": hop}
            log.info("url fetched", extra=extra)
            return answer.body
        if not answer.location:
            raise UrlUnreachableError("the image URL redirected without a Location")
        target = parse_url(urljoin(target.url, answer.location.strip()))
    raise UrlTooManyRedirectsError(
        f"the image URL redirected more than {settings.url_max_redirects} times"
    )
