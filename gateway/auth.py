"""Who may call the gateway: bearer tokens, configured as SHA-256 hashes.

CT_AUTH_TOKENS_FILE names a file of hex SHA-256 digests of the accepted tokens, one per line
(blank lines and `#` comments allowed): `printf %s "$TOKEN" | sha256sum | cut -d' ' -f1`. The
gateway never holds a token itself. The file is re-read when its modification time, size or inode
changes, so rotating tokens needs no restart (a mounted Kubernetes Secret is updated in place;
kube-config/components/auth). A file that cannot be read or parsed later keeps the last good set.

Every API route needs `Authorization: Bearer <token>`; a missing, malformed or unknown token gets
the same 401 (body and WWW-Authenticate header), so an answer never says which part was wrong.
The token's digest is compared with every configured digest by hmac.compare_digest, without
stopping at a match. Open without a token: /healthz and /readyz (kubelet probes), /metrics
(Prometheus; keep it reachable only from inside the cluster: the NetworkPolicy), and the web page
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
from pathlib import Path

from flask import Flask, request

from gateway.errors import UnauthorizedError

log = logging.getLogger(__name__)

REALM = "ct-triage"
CHALLENGE = f'Bearer realm="{REALM}"'
# Endpoints open without a token (Flask endpoint names; see the module docstring).
OPEN_ENDPOINTS = frozenset({"healthz", "readyz", "metrics_endpoint", "webpage_index", "static"})
_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_BEARER = re.compile(r"^Bearer +([!-~]+) *$", re.IGNORECASE)


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
    """The accepted digests, re-read when the file changes; thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._digests: tuple[bytes, ...] = ()
        self._load(strict=True)

    def digests(self) -> tuple[bytes, ...]:
        self._load(strict=False)
        return self._digests

    def _load(self, strict: bool) -> None:
        try:
            stat = os.stat(self.path)  # follows the Secret volume's symlinks
        except OSError as err:
            if strict:
                raise TokenFileError(f"cannot read {self.path}: {err.strerror}") from None
            return  # keep the last good set (a Secret update swaps links underneath us)
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                digests = parse_hashes(self.path.read_text(encoding="ascii"), str(self.path))
            except (OSError, UnicodeDecodeError, TokenFileError) as err:
                if strict:
                    raise TokenFileError(str(err)) from None
                log.error("auth: keeping the previous tokens: %s", err)
                self._stamp = stamp  # do not re-read a bad file on every request
                return
            if not digests:
                log.warning("auth: %s lists no token: every API request is refused", self.path)
            elif self._stamp is not None:
                log.info("auth: reloaded %d token hashes from %s", len(digests), self.path)
            self._digests, self._stamp = digests, stamp


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
    """Whether a request may send its body: gateway/buffered.py asks before reading it, so a
    caller without a valid token cannot make the gateway take in a whole upload first. Bodiless
    methods pass here; require_token still checks every request in full."""
    if tokens is None or method not in BODY_METHODS:
        return True
    match = _BEARER.match(authorization)
    return match is not None and token_matches(match.group(1), tokens.digests())
