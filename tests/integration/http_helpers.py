"""HTTP helpers of the gateway integration tests: JSON answers, multipart and JSON posts."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid


def request(
    url: str, body: bytes | None = None, content_type: str | None = None, method: str | None = None
) -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of one request; never raises for HTTP error statuses."""
    headers = {"Content-Type": content_type} if content_type else {}
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def multipart(data: bytes, field: str = "image", filename: str = "scan.jpg") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def post_file(url: str, data: bytes, field: str = "image") -> tuple[int, dict, dict]:
    body, content_type = multipart(data, field)
    return request(url, body, content_type)


def post_json(url: str, payload: object) -> tuple[int, dict, dict]:
    return request(url, json.dumps(payload).encode(), "application/json")


def predict_url(base: str, task: str) -> str:
    return f"{base}/v1/models/{task}:predict"
