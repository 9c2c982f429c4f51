"""A tiny client for manual tries, standard library only.

python -m gateway.client scan.jpg --task brain-stroke
python -m gateway.client https://example.org/scan.png --task brain-tumor --host http://gw:9696
python -m gateway.client scan.jpg --b64          # send as JSON image_b64 instead of multipart
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from gateway.config import DEFAULT_PORT

DEFAULT_HOST = f"http://localhost:{DEFAULT_PORT}"


def build_request(source: str, task: str | None, host: str, b64: bool) -> urllib.request.Request:
    path = f"/v1/models/{task}:predict" if task else "/predict"
    url = host.rstrip("/") + path
    if source.startswith(("http://", "https://")):
        return _json_request(url, {"url": source})
    data = Path(source).read_bytes()
    if b64:
        return _json_request(url, {"image_b64": base64.b64encode(data).decode()})
    field = "image" if task else "img"
    boundary = uuid.uuid4().hex
    kind = mimetypes.guess_type(source)[0] or "application/octet-stream"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{Path(source).name}"\r\nContent-Type: {kind}\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return urllib.request.Request(url, data=body, headers=headers, method="POST")


def _json_request(url: str, payload: dict) -> urllib.request.Request:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    return urllib.request.Request(url, data=body, headers=headers, method="POST")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send one image to the ct-triage gateway.")
    parser.add_argument("source", help="an image file, or an http(s) URL the gateway downloads")
    parser.add_argument("--task", help="model name; without it, POST /predict (default task)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"gateway base URL ({DEFAULT_HOST})")
    parser.add_argument("--b64", action="store_true", help="send a file as JSON image_b64")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    try:
        request = build_request(args.source, args.task, args.host, args.b64)
    except OSError as exc:
        print(f"cannot read {args.source}: {exc}", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    except (urllib.error.URLError, OSError) as exc:
        print(f"cannot reach {args.host}: {exc}", file=sys.stderr)
        return 2
    try:
        print(json.dumps(json.loads(body), indent=2))
    except ValueError:
        print(body.decode(errors="replace"))
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
