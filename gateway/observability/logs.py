"""Structured logging: one JSON object per line, request ids, URL redaction.

Wiring (gateway/app.py): call `configure(settings.log_level)` once; flask_hook.py binds each
request's id, so every log line written while a request is handled carries it, and writes the one
access line each request ends with (method, path, status, latency_ms, task).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import urlsplit

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_FIELDS = ("request_id", "task", "status", "latency_ms")
# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged too.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(incoming: str | None) -> str:
    """The caller's X-Request-ID when it is a short safe token, else a fresh uuid4 hex."""
    if incoming and _SAFE_REQUEST_ID.match(incoming):
        return incoming
    return new_request_id()


def bind_request_id(request_id: str | None) -> contextvars.Token:
    """Make `request_id` appear on every log line of this context (thread / request)."""
    return _request_id.set(request_id)


def current_request_id() -> str | None:
    return _request_id.get()


def redact_url(url: str) -> str:
    """scheme://host[:port]/path of a URL, without credentials, query or fragment (secrets)."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable url>"
    if ":" in host:
        host = f"[{host}]"
    path = parts.path if len(parts.path) <= 200 else parts.path[:200] + "..."
    marker = "?<redacted>" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{path}{marker}" if parts.scheme else f"{path}{marker}"


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON with ts, level, logger, msg and every extra field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or _request_id.get()
        if request_id:
            entry["request_id"] = request_id
        for name in _FIELDS[1:]:
            if getattr(record, name, None) is not None:
                entry[name] = getattr(record, name)
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRS and name not in entry and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str | int = "INFO", stream: IO[str] | None = None) -> None:
    """JSON lines at `level` for the `gateway` loggers, on `stream` (stderr); idempotent.

    Only the `gateway` logger tree is configured, so a host process (gunicorn, pytest) keeps its
    own root logging.
    """
    logger = logging.getLogger("gateway")
    for old in [h for h in logger.handlers if isinstance(h.formatter, JsonFormatter)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def unbind_request_id(token: contextvars.Token) -> None:
    """Undo bind_request_id (the end of a request)."""
    _request_id.reset(token)
