"""Download an image from a client-supplied URL without becoming an SSRF proxy.

Every hop (the first URL and each redirect) is parsed strictly (url.py), its host resolved once,
and ALL resolved addresses checked against the public-address policy (policy.py). The connection
then goes to one of those checked addresses (transport.py): never a second DNS lookup, so DNS
rebinding has no window.

Status codes (the client sent us the URL, so upstream failures are reported as the client's):
  400 url_invalid / url_forbidden   malformed URL, bad scheme, credentials, non-public address
  422 url_unreachable / url_bad_status / url_too_many_redirects
      the URL does not lead to an image; not 502, which this API reserves for model-server errors
      that operators are alerted on, and a broken client link is no gateway fault
  504 url_timeout  the upstream host did not answer within the deadline; not 408, which means the
      client was too slow sending its own request (and which clients and proxies retry blindly)
  413 url_too_large, 415 unsupported_media_type

Tests replace `policy.resolve_host`, `policy.address_allowed` and `transport.tls_context`: patch
them on those modules (the names re-exported here are for callers, not for patching).
"""

from __future__ import annotations

from gateway.fetch import policy, transport, url
from gateway.fetch.policy import (
    address_allowed,
    checked_addresses,
    is_public_address,
    resolve_host,
)
from gateway.fetch.transport import FetchSettings, fetch_image, tls_context
from gateway.fetch.url import MAX_URL_CHARS, IPAddress, Target, parse_url

__all__ = [
    "MAX_URL_CHARS",
    "FetchSettings",
    "IPAddress",
    "Target",
    "address_allowed",
    "checked_addresses",
    "fetch_image",
    "is_public_address",
    "parse_url",
    "policy",
    "resolve_host",
    "tls_context",
    "transport",
    "url",
]
