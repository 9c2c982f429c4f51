"""The browser tests' page helpers (test-only): chromium's flags, a watch on one page's errors,
API calls, waits for the heatmap, the model warnings and the screenshot."""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ANSWER_TIMEOUT_MS = 120_000  # first predictions on a busy 2-core machine
SCREENSHOT_NAME = "web-page.png"
SCREENSHOT_MAX_BYTES = 300 * 1024
SLICE_NAME = re.compile(r"^(?P<scan>.+) \((?P<slice>\d+)\)\.[A-Za-z]+$")


def scan_with_slices(folder: Path, low: int, high: int) -> list[Path] | None:
    """The slices of the first scan in `folder` (numeric order) with low..high slices, in slice
    order; None when there is none."""
    scans: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for path in folder.iterdir():
        match = SLICE_NAME.match(path.name)
        if match:
            scans[match["scan"]].append((int(match["slice"]), path))
    fitting = sorted(
        (s for s, files in scans.items() if low <= len(files) <= high),
        key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s),
    )
    return [path for _, path in sorted(scans[fitting[0]])] if fitting else None


class PageWatch:
    """Console errors, page errors, CSP violations and requests to other origins of one page."""

    def __init__(self, page, base_url: str) -> None:
        self.page = page
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.foreign_requests: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("request", lambda r: self._request(r.url, base_url))
        page.add_init_script(
            "window.__csp = [];"
            "document.addEventListener('securitypolicyviolation', e =>"
            " window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
        )

    def _console(self, message) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _request(self, url: str, base_url: str) -> None:
        if not url.startswith((base_url + "/", "data:", "blob:")):
            self.foreign_requests.append(url)

    def csp_violations(self) -> list[str]:
        return self.page.evaluate("window.__csp || []")

    def check(self, allowed_statuses: tuple[int, ...] = ()) -> None:
        """No CSP violation, no page error, no foreign request, and no console error but Chrome's
        'Failed to load resource ... status of N' for the statuses a test provoked."""
        assert self.csp_violations() == []
        assert self.page_errors == []
        assert self.foreign_requests == []
        allowed = [f"status of {status}" for status in allowed_statuses]
        unexpected = [e for e in self.console_errors if not any(a in e for a in allowed)]
        assert unexpected == []
        assert not any("Content Security Policy" in e for e in self.console_errors)


def api_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def post_series(url: str, files: list[Path]) -> dict:
    boundary = uuid.uuid4().hex
    body = b"".join(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            f'filename="{path.name}"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()
        + path.read_bytes()
        + b"\r\n"
        for path in files
    )
    body += f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def model_of(base_url: str, task: str) -> dict:
    models = api_json(base_url + "/v1/models")["models"]
    return next(m for m in models if m["task"] == task)


def wait_for_heatmap(page, slice_index: int | None = None) -> None:
    page.wait_for_function(
        "() => { const i = document.getElementById('heatmap');"
        " return !document.getElementById('heatmap-figure').hidden"
        " && i.complete && i.naturalWidth > 0; }",
        timeout=ANSWER_TIMEOUT_MS,
    )
    if slice_index is not None:
        page.wait_for_function(
            "k => document.getElementById('heatmap-caption').textContent.includes(`slice ${k} (`)",
            arg=slice_index,
            timeout=ANSWER_TIMEOUT_MS,
        )


def check_model_warnings(page, model: dict) -> None:
    """The intended-use banner always; the model's validation flag and figures as it states them."""
    banner = page.locator("#intended-use")
    assert banner.is_visible() and "Not a medical device" in banner.inner_text()
    info = page.locator("#model-info").inner_text()
    if model.get("validated") is False:
        warning = page.locator("#model-warning")
        assert warning.is_visible()
        assert "not validated" in warning.inner_text()
        assert model.get("validated_reason", "") in warning.inner_text()
    if model.get("validation"):
        assert page.locator("#model-info table.validation").is_visible()
    if model.get("intended_use"):
        assert model["intended_use"] in info


def save_screenshot(page, tmp_path: Path) -> Path:
    """The whole page as a 256-colour PNG (a fraction of the true-colour size, same look)."""
    from PIL import Image

    raw = tmp_path / f"raw-{SCREENSHOT_NAME}"
    page.screenshot(path=str(raw), full_page=True)
    shot = tmp_path / SCREENSHOT_NAME
    with Image.open(raw) as image:
        palette = image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
        palette.save(shot, optimize=True)
    assert 0 < shot.stat().st_size < SCREENSHOT_MAX_BYTES, f"{shot.stat().st_size} bytes"
    target = os.environ.get("CT_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(target) / SCREENSHOT_NAME)
    return shot
