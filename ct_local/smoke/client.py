"""The smoke's HTTP client: one request, and polling until an answer is acceptable."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

HEADERS: dict[str, str] = {}  # sent with every request (Authorization, when a token is given)


class SmokeError(Exception):
    """A check failed; the message says which and why (the smoke's one failure type)."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: object  # parsed JSON, or the raw text when the body is not JSON
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased


def request(
    url: str, data: bytes | None = None, content_type: str = "", timeout: float = 10.0
) -> Reply:
    """One HTTP call; HTTP error statuses are returned, connection failures raise SmokeError."""
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if content_type:
        req.add_header("Content-Type", content_type)
    for name, value in HEADERS.items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, headers = resp.status, resp.read(), _lower(resp.headers)
    except urllib.error.HTTPError as err:
        status, raw, headers = err.code, err.read(), _lower(err.headers)
    except (urllib.error.URLError, OSError) as err:
        raise SmokeError(f"{url}: cannot connect ({getattr(err, 'reason', err)})") from None
    text = raw.decode("utf-8", "replace")
    try:
        return Reply(status, json.loads(text), headers)
    except json.JSONDecodeError:
        return Reply(status, text, headers)


def _lower(headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def wait_for(url: str, timeout: float, accept: Callable[[Reply], bool]) -> Reply:
    """Poll url until accept(reply) or timeout; the error names the last answer seen."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            reply = request(url, timeout=min(5.0, max(timeout, 0.5)))
            if accept(reply):
                return reply
            last = f"HTTP {reply.status}: {json.dumps(reply.body)[:500]}"
        except SmokeError as err:
            last = str(err)
        if time.monotonic() >= deadline:
            raise SmokeError(f"{url} not ready after {timeout:.0f} s; last: {last}")
        time.sleep(0.5)
