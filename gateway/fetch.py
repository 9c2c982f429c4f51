"""Download an image from a client-supplied URL without becoming an SSRF proxy.

Every hop (the first URL and each redirect) is parsed strictly, its host resolved once, and ALL
resolved addresses checked against the public-address policy below. The connection then goes to
one of those checked addresses (never a second DNS lookup, so DNS rebinding has no window) with the
original Host header and, for https, SNI and certificate verification against the URL's hostname.
One wall-clock deadline covers DNS, connects, TLS, headers and body of all hops; the body is
streamed under a byte cap.

Status codes (the client sent us the URL, so upstream failures are reported as the client's):
  400 url_invalid / url_forbidden   malformed URL, bad scheme, credentials, non-public address
  422 url_unreachable / url_bad_status / url_too_many_redirects
      the URL does not lead to an image; not 502, which this API reserves for model-server errors
      that operators are alerted on, and a broken client link is no gateway fault
  504 url_timeout  the upstream host did not answer within the deadline; not 408, which means the
      client was too slow sending its own request (and which clients and proxies retry blindly)
  413 url_too_large, 415 unsupported_media_type
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import logging
import queue
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urljoin, urlsplit

from gateway.errors import ApiError
from gateway.logs import redact_url

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_CHARS = 4096
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

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_PORT = re.compile(r"^[0-9]{1,5}$")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0[xX][0-9a-fA-F]*)$")
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+/-]*$")
# Names that by definition never reach the public internet (RFC 6761, RFC 6762, cloud metadata).
_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
_PRIVATE_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"

_V4_FORBIDDEN = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 connects to the local host on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_FORBIDDEN_GLOBAL = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments, Teredo 2001::/32 included (embeds any IPv4)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
    )
)
_V6_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_V6_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V6_6TO4 = ipaddress.IPv6Network("2002::/16")


class FetchSettings(Protocol):
    url_allow_private: bool
    url_timeout_s: float
    url_max_redirects: int
    max_request_bytes: int


@dataclass(frozen=True)
class Target:
    """One parsed, normalised http(s) URL."""

    scheme: str
    host: str  # lower-case ASCII name, or the canonical text of an IP literal (no brackets)
    port: int
    request_target: str  # path and query, percent-encoded
    ip: IPAddress | None  # set when the host is an IP literal (in any spelling)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.request_target}"


def _invalid(message: str) -> ApiError:
    return ApiError(400, "url_invalid", message)


def _forbidden(message: str) -> ApiError:
    return ApiError(400, "url_forbidden", message)


def _timeout() -> ApiError:
    return ApiError(504, "url_timeout", "the image URL did not answer in time")


def _unreachable(message: str) -> ApiError:
    return ApiError(422, "url_unreachable", message)


# ----------------------------------------------------------------------------- parsing


def parse_url(url: str) -> Target:
    """Parse an absolute http(s) URL strictly. Raises ApiError 400 (url_invalid / url_forbidden)."""
    if not isinstance(url, str) or not url:
        raise _invalid("the URL must be a non-empty string")
    if len(url) > MAX_URL_CHARS:
        raise _invalid(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise _invalid("the URL contains whitespace, control characters or backslashes")
    if not url.isascii():
        try:
            url.encode("utf-8")
        except UnicodeEncodeError:
            raise _invalid("the URL is not valid Unicode (lone surrogates)") from None
    scheme, sep, rest = url.partition(":")
    if not sep or not _SCHEME.match(scheme):
        raise _invalid("the URL must be absolute, e.g. https://host/image.png")
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise _forbidden("only http and https URLs are accepted")
    if not rest.startswith("//"):
        raise _invalid("the URL has no host")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _invalid("the URL is malformed") from None
    if "@" in parts.netloc:
        raise _forbidden("URLs with credentials (user:password@host) are not accepted")
    host_text, port_text = _split_netloc(parts.netloc)
    host, ip = _normalise_host(host_text)
    port = _parse_port(port_text, 443 if scheme == "https" else 80)
    path = quote(parts.path, safe=_PATH_SAFE) or "/"
    query = quote(parts.query, safe=_PATH_SAFE + "?")
    return Target(scheme, host, port, path + ("?" + query if query else ""), ip)


def _split_netloc(netloc: str) -> tuple[str, str | None]:
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise _invalid("the URL has an unterminated [IPv6] host")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _invalid("the URL has text after its [IPv6] host")
        return host, (rest[1:] if rest else None)
    if netloc.count(":") > 1:
        raise _invalid("the URL host has more than one ':' (IPv6 needs [brackets])")
    host, sep, port = netloc.partition(":")
    return host, (port if sep else None)


def _parse_port(text: str | None, default: int) -> int:
    if text is None:
        return default
    if not _PORT.match(text) or not 1 <= int(text) <= 65535:
        raise _invalid("the URL port must be a number from 1 to 65535")
    return int(text)


def _normalise_host(text: str) -> tuple[str, IPAddress | None]:
    if text.startswith("["):
        return _parse_ipv6_literal(text[1:-1])
    if not text:
        raise _invalid("the URL has an empty host")
    if "%" in text:
        raise _invalid("percent-encoded hosts are not accepted")
    try:
        # IDNA also folds look-alikes: full-width digits and dots become ASCII ones here.
        host = text.lower() if text.isascii() else text.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise _invalid("the URL host is not a valid domain name") from None
    if host.endswith("."):
        host = host[:-1]
    ip4 = _parse_ipv4_like(host)
    if ip4 is not None:
        return str(ip4), ip4
    if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        raise _invalid("the URL host is not a valid domain name")
    return host, None


def _parse_ipv6_literal(inner: str) -> tuple[str, ipaddress.IPv6Address]:
    if "%" in inner:
        raise _invalid("IPv6 zone identifiers are not accepted")
    try:
        ip6 = ipaddress.IPv6Address(inner)
    except ValueError:
        raise _invalid("the URL has a malformed [IPv6] host") from None
    return str(ip6), ip6


def _parse_ipv4_like(host: str) -> ipaddress.IPv4Address | None:
    """Read a host the way inet_aton and URL parsers do when its last label is a number.

    Decimal (2130706433), hex (0x7f000001), octal (0177.0.0.1) and short (127.1) forms all name an
    IPv4 address; treating them as names would leave the policy check to resolver quirks.
    """
    parts = host.split(".")
    if not _NUMERIC_LABEL.match(parts[-1]):
        return None
    if len(parts) > 4:
        raise _invalid("the URL host is not a valid IPv4 address")
    try:
        numbers = [_inet_aton_part(p) for p in parts]
    except ValueError:
        raise _invalid("the URL host is not a valid IPv4 address") from None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(parts)):
        raise _invalid("the URL host is not a valid IPv4 address")
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _inet_aton_part(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8)
    return int(part, 10)


# ----------------------------------------------------------------------------- address policy


def is_public_address(ip: IPAddress) -> bool:
    """True when `ip` is a globally routable unicast address, embedded IPv4 forms included."""
    if isinstance(ip, ipaddress.IPv4Address):
        return not any(ip in net for net in _V4_FORBIDDEN)
    if ip.scope_id:
        return False
    if ip in _V6_MAPPED or ip in _V6_NAT64:
        return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip in _V6_6TO4:
        return is_public_address(ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF))
    if ip not in _V6_GLOBAL_UNICAST:
        return False
    return not any(ip in net for net in _V6_FORBIDDEN_GLOBAL)


def _never_connectable(ip: IPAddress) -> bool:
    """Addresses refused even for private deployments: none of them is one host."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255")


def address_allowed(ip: IPAddress, allow_private: bool) -> bool:
    if _never_connectable(ip):
        return False
    return allow_private or is_public_address(ip)


def _name_is_private(host: str) -> bool:
    # Single-label names resolve through search domains to cluster-internal services.
    return host in _PRIVATE_NAMES or host.endswith(_PRIVATE_SUFFIXES) or "." not in host


# ----------------------------------------------------------------------------- resolution


def resolve_host(host: str, port: int) -> list[str]:
    """All addresses the system resolver gives for `host` (tests replace this function)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [info[4][0] for info in infos]


def _resolve_before(host: str, port: int, deadline: float) -> list[str]:
    """resolve_host in a daemon thread, so a stuck resolver cannot outlive the deadline."""
    answer: queue.Queue = queue.Queue(maxsize=1)

    def lookup() -> None:
        try:
            answer.put(resolve_host(host, port))
        except Exception as exc:  # handed to the caller below
            answer.put(exc)

    threading.Thread(target=lookup, name="fetch-dns", daemon=True).start()
    try:
        result = answer.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise _timeout() from None
    if isinstance(result, Exception):
        raise _unreachable("the image URL's host name does not resolve") from None
    return result


def checked_addresses(target: Target, allow_private: bool, deadline: float) -> list[IPAddress]:
    """The addresses to connect to, once every address the host resolves to passed the policy."""
    refused = _forbidden("the URL's host is not a public internet address")
    if target.ip is not None:
        if not address_allowed(target.ip, allow_private):
            log.warning("url refused", extra={"host": target.host, "address": target.host})
            raise refused
        return [target.ip]
    if not allow_private and _name_is_private(target.host):
        log.warning("url refused", extra={"host": target.host})
        raise refused
    addresses: list[IPAddress] = []
    for text in _resolve_before(target.host, target.port, deadline):
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise refused from None
        if not address_allowed(ip, allow_private):
            log.warning("url refused", extra={"host": target.host, "address": str(ip)})
            raise refused
        addresses.append(ip)
    if not addresses:
        raise _unreachable("the image URL's host name does not resolve")
    return list(dict.fromkeys(addresses))


# ----------------------------------------------------------------------------- connection


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
            raise _timeout()
        conn = _PinnedConnection(target, ip, timeout=remaining)
        watchdog.conn = conn
        try:
            conn.connect()
            return conn
        except OSError as exc:
            conn.close()
            if isinstance(exc, TimeoutError) or watchdog.fired or time.monotonic() >= deadline:
                raise _timeout() from None
            if isinstance(exc, ssl.SSLError):
                reason = exc.reason or "error"
                raise _unreachable(f"TLS with the image host failed: {reason}") from None
            last = exc
    raise _unreachable("could not connect to the image URL's host") from last


def _request(
    target: Target, addresses: list[IPAddress], settings: FetchSettings, deadline: float, limit: int
) -> _Answer:
    with _Watchdog(deadline) as watchdog:
        conn = _connect(target, addresses, deadline, watchdog)
        try:
            answer = _exchange(conn, target, limit, watchdog)
            if watchdog.fired:  # a read cut short by the watchdog looks like a clean EOF
                raise _timeout()
            return answer
        except (OSError, http.client.HTTPException) as exc:
            if watchdog.fired or time.monotonic() >= deadline or isinstance(exc, TimeoutError):
                raise _timeout() from None
            raise _unreachable("the image URL's host sent an invalid HTTP answer") from None
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
        raise _timeout()
    if resp.status in REDIRECT_STATUSES:
        return _Answer(resp.status, location=resp.getheader("Location"))
    if resp.status not in OK_STATUSES:
        raise ApiError(422, "url_bad_status", f"the image URL answered HTTP {resp.status}")
    _check_content_type(resp.getheader("Content-Type"))
    return _Answer(resp.status, body=_read_capped(resp, cap, watchdog))


def _check_content_type(value: str | None) -> None:
    media = (value or "").split(";", 1)[0].strip().lower()
    if media.startswith("image/") or media in ACCEPTED_TYPES:
        return
    shown = media[:60] if _MEDIA_TYPE.match(media) else "unreadable"
    raise ApiError(
        415,
        "unsupported_media_type",
        f"the image URL's Content-Type is {shown or 'missing'}; expected image/*, "
        "application/dicom or application/octet-stream",
    )


def _too_large(cap: int) -> ApiError:
    return ApiError(413, "url_too_large", f"the image at the URL is larger than {cap} bytes")


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
            raise _timeout()
        chunks.append(chunk)
    if watchdog.fired:
        raise _timeout()
    if resp.length:  # read1 ends quietly when the server closes before Content-Length bytes
        raise http.client.IncompleteRead(b"", resp.length)
    return b"".join(chunks)


# ----------------------------------------------------------------------------- entry point


def fetch_image(url: str, settings: FetchSettings, limit: int | None = None) -> bytes:
    """GET an image from a client-supplied URL, following checked redirects. Raises ApiError.

    At most `limit` bytes (default: settings.max_request_bytes; a series allows more)."""
    limit = settings.max_request_bytes if limit is None else limit
    deadline = time.monotonic() + settings.url_timeout_s
    target = parse_url(url)
    for hop in range(settings.url_max_redirects + 1):
        addresses = checked_addresses(target, settings.url_allow_private, deadline)
        answer = _request(target, addresses, settings, deadline, limit)
        if answer.status not in REDIRECT_STATUSES:
            extra = {"url": redact_url(target.url), "bytes": len(answer.body), "redirects": hop}
            log.info("url fetched", extra=extra)
            return answer.body
        if not answer.location:
            raise _unreachable("the image URL redirected without a Location")
        target = parse_url(urljoin(target.url, answer.location.strip()))
    raise ApiError(
        422,
        "url_too_many_redirects",
        f"the image URL redirected more than {settings.url_max_redirects} times",
    )
