"""Who may call the gateway: bearer tokens, configured as SHA-256 hashes.

CT_AUTH_TOKENS_FILE names a file of hex SHA-256 digests of the accepted tokens, one per line
(blank lines and `#` comments allowed): `printf %s "$TOKEN" | sha256sum | cut -d' ' -f1`. The
gateway never holds a token itself. The file is re-read when its modification time, size or inode
changes, so rotating tokens needs no restart (a mounted Kubernetes Secret is swapped atomically;
kube-config/components/auth). Replace the file atomically (write a temporary file beside it, then
rename it over the old one); a rewrite in place is tolerated: a change is taken in only once the
file has been still for SETTLE_S, so a request never sees it half-written. A file that is missing,
unreadable, malformed or empty once still denies every request (fail closed), logged once.

Every API route needs `Authorization: Bearer <token>`; a missing, malformed or unknown token gets
the same 401 (body and WWW-Authenticate header), so an answer never says which part was wrong.
The token's digest is compared with every configured digest by hmac.compare_digest, without
stopping at a match. Open without a token: /healthz and /readyz (kubelet probes), /metrics
(Prometheus; keep it reachable only from inside the cluster: the NetworkPolicy), /openapi.json
(the contract), and the web page
(GET / and /static/), which cannot send a token: with auth on, use it behind an authenticating
proxy (e.g. oauth2-proxy) or with auth off. No file configured: auth is off (`make run`), and the
gateway logs so at start.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import threading
import time
from pathlib import Path

from flask import Flask, request

from gateway.errors import UnauthorizedError

log = logging.getLogger(__name__)

REALM = "ct-triage"
CHALLENGE = f'Bearer realm="{REALM}"'
# Endpoints open without a token (Flask endpoint names; see the module docstring).
OPEN_ENDPOINTS = frozenset(
    {"healthz", "readyz", "metrics_endpoint", "openapi_document", "webpage_index", "static"}
)
_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_BEARER = re.compile(r"^Bearer +([!-~]+) *$", re.IGNORECASE)
# A change to the tokens file is taken in once the file has been still this long (TokenFile).
SETTLE_S = 2.0
_Stamp = tuple[int, int, int]
MISSING: _Stamp = (-1, -1, -1)
CHANGING: _Stamp = (-2, -2, -2)  # the file changed while it was read


class TokenFileError(ValueError):
    """The tokens file cannot be read or holds a line that is not a hex SHA-256 digest."""


def parse_hashes(text: str, source: str = "tokens file") -> tuple[bytes, ...]:
    digests = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not _HEX_SHA256.match(line):
            raise TokenFileError(f"{source} line {number}: not a hex SHA-256 digest")
        digests.append(bytes.fromhex(line))
    return tuple(digests)


def token_matches(token: str, digests: tuple[bytes, ...]) -> bool:
    """Whether sha256(token) is one of `digests`, in time independent of which one (or none):
    every digest is compared, in constant time, and the results are OR-ed without branching."""
    digest = hashlib.sha256(token.encode("utf-8")).digest()
    found = False
    for candidate in digests:
        found |= hmac.compare_digest(digest, candidate)
    return found


class TokenFile:
    """The accepted digests, re-read when the file changes; thread-safe.

    A change is taken in once the file has been still for `settle_s` (the same stamp seen that
    long, or a renamed-in file's mtime that old), and only from a read the file did not change
    under: a rewrite in place (truncate, then write) is never taken in half-written. A settled
    file that is missing, unreadable, malformed or lists no token denies every request, logged
    once per change.
    """

    def __init__(self, path: str | Path, settle_s: float | None = None) -> None:
        self.path = Path(path)
        self.settle_s = SETTLE_S if settle_s is None else settle_s
        self._lock = threading.Lock()
        self._pending: tuple[_Stamp, float] | None = None  # a change not settled yet, first seen
        stamp, digests = self._read()
        if isinstance(digests, TokenFileError):
            raise digests
        if not digests:
            log.error("auth: %s lists no token: every API request is refused", self.path)
        self._state = (stamp, digests)  # one attribute: requests read it without the lock

    def digests(self) -> tuple[bytes, ...]:
        stamp = _stamp(self.path)
        if stamp == self._state[0]:
            return self._state[1]
        with self._lock:
            if stamp != self._state[0] and self._settled(stamp):
                self._take(stamp, *self._read())
            return self._state[1]

    def _settled(self, stamp: _Stamp) -> bool:
        """Whether `stamp` has been still for settle_s since we first saw it; or, for another
        file renamed over ours (atomic replacement), since its mtime. Not the mtime of a file
        rewritten in place: a stat during a truncate can show the new size with the old mtime."""
        now = time.monotonic()
        if self._pending is None or self._pending[0] != stamp:
            self._pending = (stamp, now)
        replaced = stamp != MISSING and stamp[2] != self._state[0][2]
        if replaced and time.time_ns() - stamp[0] >= self.settle_s * 1e9:
            return True
        return now - self._pending[1] >= self.settle_s

    def _read(self) -> tuple[_Stamp, tuple[bytes, ...] | TokenFileError]:
        """(stamp, digests or the error) from one read the file did not change under."""
        try:
            with open(self.path, "rb") as file:
                before = _stamp(file.fileno())
                raw = file.read()
                after = _stamp(file.fileno())
        except OSError as err:
            return _stamp(self.path), TokenFileError(f"cannot read {self.path}: {err.strerror}")
        if before != after:
            return CHANGING, TokenFileError(f"{self.path} changed while it was read")
        try:
            return after, parse_hashes(raw.decode("ascii"), str(self.path))
        except UnicodeDecodeError:
            return after, TokenFileError(f"{self.path}: not ASCII text")
        except TokenFileError as err:
            return after, err

    def _take(
        self, settled: _Stamp, stamp: _Stamp, digests: tuple[bytes, ...] | TokenFileError
    ) -> None:
        """Take in what was read, if it is the file that was still (`settled`)."""
        if stamp != settled:
            return  # written again since: the next request looks again
        self._pending = None
        if isinstance(digests, TokenFileError):
            log.error("auth: every API request is refused: %s", digests)
            digests = ()
        elif not digests:
            log.error("auth: %s lists no token: every API request is refused", self.path)
        else:
            log.info("auth: reloaded %d token hashes from %s", len(digests), self.path)
        self._state = (stamp, digests)


def _stamp(target: Path | int) -> _Stamp:
    """(mtime_ns, size, inode) of a path (following links) or an open file; MISSING if none."""
    try:
        stat = os.stat(target)
    except OSError:
        return MISSING
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def unauthorized() -> UnauthorizedError:
    return UnauthorizedError(
        "a valid bearer token is required (Authorization: Bearer <token>)",
        headers={"WWW-Authenticate": CHALLENGE},
    )


def init_app(app: Flask, tokens_file: str) -> TokenFile | None:
    """Require bearer tokens on every endpoint but OPEN_ENDPOINTS when `tokens_file` is set."""
    if not tokens_file:
        log.warning("auth: off (CT_AUTH_TOKENS_FILE is not set): every caller is accepted")
        return None
    tokens = TokenFile(tokens_file)
    log.info("auth: on, %d token hashes from %s", len(tokens.digests()), tokens.path)

    @app.before_request
    def require_token() -> None:
        if request.endpoint in OPEN_ENDPOINTS:
            return
        match = _BEARER.match(request.headers.get("Authorization", ""))
        if match is None or not token_matches(match.group(1), tokens.digests()):
            raise unauthorized()

    return tokens


BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def admits_body(tokens: TokenFile | None, method: str, authorization: str) -> bool:
    """Whether a request may send its body: gateway/server.py asks before reading it, so a
    caller without a valid token cannot make the gateway take in a whole upload first. Bodiless
    methods pass here; require_token still checks every request in full."""
    if tokens is None or method not in BODY_METHODS:
        return True
    match = _BEARER.match(authorization)
    return match is not None and token_matches(match.group(1), tokens.digests())
