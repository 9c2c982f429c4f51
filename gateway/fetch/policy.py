"""The address policy: which hosts a client-supplied URL may reach, checked on every address.

A name is resolved once (in a thread, under the request's deadline) and ALL its addresses must pass;
the connection then goes to one of those checked addresses, so DNS rebinding has no window.
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import socket
import threading
import time

from gateway.errors import UrlForbiddenError, UrlTimeoutError, UrlUnreachableError
from gateway.fetch.url import IPAddress, Target

log = logging.getLogger(__package__)  # "gateway.fetch", as before the package split

# Names that by definition never reach the public internet (RFC 6761, RFC 6762, cloud metadata).
_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
_PRIVATE_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})

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
        raise timed_out() from None
    if isinstance(result, Exception):
        raise UrlUnreachableError("the image URL's host name does not resolve") from None
    return result


def timed_out() -> UrlTimeoutError:
    return UrlTimeoutError("the image URL did not answer in time")


def checked_addresses(target: Target, allow_private: bool, deadline: float) -> list[IPAddress]:
    """The addresses to connect to, once every address the host resolves to passed the policy."""
    refused = UrlForbiddenError("the URL's host is not a public internet address")
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
        raise UrlUnreachableError("the image URL's host name does not resolve")
    return list(dict.fromkeys(addresses))
