"""The gateway's client, standard library only (no numpy, Pillow or Flask: it imports nothing
else from the project, so it also runs from the gateway image and from a bare `pip install -e .`).
`ct-triage predict` and `ct-triage models` (ct_local/cli.py) are this module.

python -m gateway.client scan.jpg --task brain-stroke
python -m gateway.client https://example.org/scan.png --task brain-tumor --url http://gw:9696
python -m gateway.client scan.jpg --b64          # send as JSON image_b64 instead of multipart
python -m gateway.client scan-folder/ --task brain-stroke    # a series: every file in the folder
python -m gateway.client scan.zip --task brain-stroke        # a series as one zip
python -m gateway.client scan.dcm --task brain-stroke --explain   # answer plus heatmap (base64)

The gateway is --url, else http://localhost:$CT_PORT (9696). Exit status: 0 for a 200 answer,
1 for an error answer (printed), 2 when the input cannot be read or the gateway not reached.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import os
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

DEFAULT_PORT = 9696  # gateway/config.py DEFAULT_PORT (tests/gateway/test_client.py checks)
PORT_ENV, TOKEN_ENV = "CT_PORT", "CT_TOKEN"
OK, API_ERROR, LOCAL_ERROR = 0, 1, 2  # exit statuses


def default_url() -> str:
    """http://localhost:$CT_PORT, the gateway `make run` / `ct-triage serve` starts."""
    return f"http://localhost:{os.environ.get(PORT_ENV) or DEFAULT_PORT}"


def build_request(
    source: str, task: str | None, host: str, b64: bool, explain: bool = False
) -> urllib.request.Request:
    path = Path(source)
    series = path.is_dir() or path.suffix.lower() == ".zip"
    if series and not task:
        raise ValueError("a folder or zip is a series: give --task")
    verb = "predict_series" if series else ("explain" if explain else "predict")
    url = host.rstrip("/") + (f"/v1/models/{task}:{verb}" if task else "/predict")
    if series and explain:
        url += "?explain=top"
    if source.startswith(("http://", "https://")):
        return _json_request(url, {"url": source})
    if b64:
        return _json_request(url, {"image_b64": base64.b64encode(path.read_bytes()).decode()})
    field = "image" if task else "img"
    files = series_files(path) if path.is_dir() else [path]
    body, content_type = multipart_body(field, [(f.name, f.read_bytes()) for f in files])
    headers = {"Content-Type": content_type}
    return urllib.request.Request(url, data=body, headers=headers, method="POST")


def series_files(folder: Path) -> list[Path]:
    """The files of a scan folder (not hidden ones); the gateway puts them in order."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValueError(f"{folder} holds no files")
    return files


def multipart_body(field: str, files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """multipart/form-data with one `field` part per file; returns (body, Content-Type)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, data in files:
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        safe = name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{safe}"\r\nContent-Type: {kind}\r\n\r\n'
        )
        parts.append(head.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _json_request(url: str, payload: dict) -> urllib.request.Request:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    return urllib.request.Request(url, data=body, headers=headers, method="POST")


def send(
    request: urllib.request.Request, timeout: float, token: str | None = None
) -> tuple[int, bytes]:
    """(status, body) of one request; an error answer is returned too. Raises OSError
    (urllib.error.URLError included) when the gateway cannot be reached."""
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def get(url: str, path: str) -> urllib.request.Request:
    return urllib.request.Request(url.rstrip("/") + path, method="GET")


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        "--host",
        dest="url",
        default=None,
        help="gateway base URL (http://localhost:$CT_PORT)",
    )
    parser.add_argument(
        "--token", default=os.environ.get(TOKEN_ENV), help=f"bearer token (${TOKEN_ENV})"
    )
    parser.add_argument("--timeout", type=float, default=60.0)


def _answer(request: urllib.request.Request, args: argparse.Namespace) -> int:
    """Send, print the answer (JSON indented), and return the exit status."""
    try:
        status, body = send(request, args.timeout, args.token)
    except OSError as exc:
        print(f"cannot reach {args.url}: {exc}", file=sys.stderr)
        return LOCAL_ERROR
    try:
        print(json.dumps(json.loads(body), indent=2))
    except ValueError:
        print(body.decode(errors="replace"))
    return OK if status == 200 else API_ERROR


def models_main(argv: list[str] | None = None) -> int:
    """GET /v1/models: the served models, printed as JSON."""
    parser = argparse.ArgumentParser(description="List the models the gateway serves.")
    _common_args(parser)
    args = parser.parse_args(argv)
    args.url = args.url or default_url()
    return _answer(get(args.url, "/v1/models"), args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send an image or a series to the gateway.")
    parser.add_argument(
        "source",
        help="an image or DICOM file, a folder or .zip of one scan's slices (a series), "
        "or an http(s) URL the gateway downloads",
    )
    parser.add_argument("--task", help="model name; without it, POST /predict (default task)")
    parser.add_argument("--b64", action="store_true", help="send a file as JSON image_b64")
    parser.add_argument("--explain", action="store_true", help="ask for a heatmap too")
    _common_args(parser)
    args = parser.parse_args(argv)
    args.url = args.url or default_url()
    try:
        request = build_request(args.source, args.task, args.url, args.b64, args.explain)
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.source}: {exc}", file=sys.stderr)
        return LOCAL_ERROR
    return _answer(request, args)


if __name__ == "__main__":
    sys.exit(main())
