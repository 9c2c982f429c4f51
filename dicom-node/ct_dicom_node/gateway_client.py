"""The gateway over HTTP: one `:predict_series?explain=top` request per series (repeated
multipart `image` fields, each named by its spool file), and the model's description.

Outcomes: a Verdict (200), Refused (the gateway will not score this series: 4xx, e.g. 422
out_of_domain, 413 too large) or GatewayUnavailable (5xx, no answer: try again later)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class GatewayUnavailable(Exception):
    """No answer, or a 5xx: the series is retried later."""


@dataclass(frozen=True)
class Refused(Exception):
    """The gateway answered 4xx: the series will never be scored as it is."""

    status: int
    code: str
    message: str


class GatewayClient:
    def __init__(self, url: str, timeout_s: float, token_file: Path | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.token_file = token_file
        self._descriptions: dict[str, dict] = {}

    def predict_series(self, task: str, files: Sequence[Path]) -> dict:
        """The series body (gateway/answers.py series_body) plus `explained` for the top slice."""
        boundary = uuid.uuid4().hex
        body = _multipart(boundary, files)
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        path = f"/v1/models/{task}:predict_series?explain=top"
        return self._call("POST", path, body, headers)

    def description(self, task: str) -> dict:
        """GET /v1/models/<task> (cached per task): intended_use, validated, ... ({} if none)."""
        if task not in self._descriptions:
            try:
                self._descriptions[task] = self._call("GET", f"/v1/models/{task}", None, {})
            except (GatewayUnavailable, Refused):
                return {}
        return self._descriptions[task]

    def _call(self, method: str, path: str, body: bytes | None, headers: dict) -> dict:
        headers = {**headers, "Accept": "application/json", **self._auth()}
        request = urllib.request.Request(self.url + path, body, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            code, message = _error_of(error)
            if error.code >= 500 or error.code == 429:
                raise GatewayUnavailable(f"{error.code} {code}") from None
            raise Refused(error.code, code, message) from None
        except (OSError, ValueError) as exc:
            raise GatewayUnavailable(type(exc).__name__) from None

    def _auth(self) -> dict:
        if self.token_file is None:
            return {}
        return {"Authorization": f"Bearer {self.token_file.read_text().strip()}"}


def _error_of(error: urllib.error.HTTPError) -> tuple[str, str]:
    try:
        body = json.loads(error.read())["error"]
        return str(body["code"]), str(body["message"])[:300]
    except (ValueError, KeyError, TypeError, OSError):
        return "http_error", f"HTTP {error.code}"


def _multipart(boundary: str, files: Sequence[Path]) -> bytes:
    parts = []
    for path in files:
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
            "Content-Type: application/dicom\r\n\r\n"
        )
        parts += [head.encode(), path.read_bytes(), b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)
