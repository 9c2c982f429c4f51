"""Strict parsing of a client-supplied http(s) URL into a normalised Target."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from gateway.errors import UrlForbiddenError, UrlInvalidError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_CHARS = 4096

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_PORT = re.compile(r"^[0-9]{1,5}$")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0[xX][0-9a-fA-F]*)$")
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


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


def parse_url(url: str) -> Target:
    """Parse an absolute http(s) URL strictly. Raises ApiError 400 (url_invalid / url_forbidden)."""
    if not isinstance(url, str) or not url:
        raise UrlInvalidError("the URL must be a non-empty string")
    if len(url) > MAX_URL_CHARS:
        raise UrlInvalidError(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise UrlInvalidError("the URL contains whitespace, control characters or backslashes")
    if not url.isascii():
        try:
            url.encode("utf-8")
        except UnicodeEncodeError:
            raise UrlInvalidError("the URL is not valid Unicode (lone surrogates)") from None
    scheme, sep, rest = url.partition(":")
    if not sep or not _SCHEME.match(scheme):
        raise UrlInvalidError("the URL must be absolute, e.g. https://host/image.png")
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlForbiddenError("only http and https URLs are accepted")
    if not rest.startswith("//"):
        raise UrlInvalidError("the URL has no host")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise UrlInvalidError("the URL is malformed") from None
    if "@" in parts.netloc:
        raise UrlForbiddenError("URLs with credentials (user:password@host) are not accepted")
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
            raise UrlInvalidError("the URL has an unterminated [IPv6] host")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise UrlInvalidError("the URL has text after its [IPv6] host")
        return host, (rest[1:] if rest else None)
    if netloc.count(":") > 1:
        raise UrlInvalidError("the URL host has more than one ':' (IPv6 needs [brackets])")
    host, sep, port = netloc.partition(":")
    return host, (port if sep else None)


def _parse_port(text: str | None, default: int) -> int:
    if text is None:
        return default
    if not _PORT.match(text) or not 1 <= int(text) <= 65535:
        raise UrlInvalidError("the URL port must be a number from 1 to 65535")
    return int(text)


def _normalise_host(text: str) -> tuple[str, IPAddress | None]:
    if text.startswith("["):
        return _parse_ipv6_literal(text[1:-1])
    if not text:
        raise UrlInvalidError("the URL has an empty host")
    if "%" in text:
        raise UrlInvalidError("percent-encoded hosts are not accepted")
    try:
        # IDNA also folds look-alikes: full-width digits and dots become ASCII ones here.
        host = text.lower() if text.isascii() else text.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UrlInvalidError("the URL host is not a valid domain name") from None
    if host.endswith("."):
        host = host[:-1]
    ip4 = _parse_ipv4_like(host)
    if ip4 is not None:
        return str(ip4), ip4
    if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        raise UrlInvalidError("the URL host is not a valid domain name")
    return host, None


def _parse_ipv6_literal(inner: str) -> tuple[str, ipaddress.IPv6Address]:
    if "%" in inner:
        raise UrlInvalidError("IPv6 zone identifiers are not accepted")
    try:
        ip6 = ipaddress.IPv6Address(inner)
    except ValueError:
        raise UrlInvalidError("the URL has a malformed [IPv6] host") from None
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
        raise UrlInvalidError("the URL host is not a valid IPv4 address")
    try:
        numbers = [_inet_aton_part(p) for p in parts]
    except ValueError:
        raise UrlInvalidError("the URL host is not a valid IPv4 address") from None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(parts)):
        raise UrlInvalidError("the URL host is not a valid IPv4 address")
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
