"""The browser tests' page helpers (test-only): chromium's flags, a watch on one page's errors,
API calls, waits for the heatmap, the model warnings and the screenshot."""

from __future__ import annotations

import importlib.resources
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
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
AXE_PATH = "/__test-axe.min.js"  # served by page.route: same origin, so the CSP allows it
BLOCKING_IMPACTS = ("serious", "critical")
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


def save_screenshot(
    page, tmp_path: Path, name: str = SCREENSHOT_NAME, full_page: bool = True
) -> Path:
    """The whole page (or the viewport) as a 256-colour PNG (a fraction of the true-colour size,
    same look)."""
    from PIL import Image

    raw = tmp_path / f"raw-{name}"
    page.screenshot(path=str(raw), full_page=full_page)
    shot = tmp_path / name
    with Image.open(raw) as image:
        palette = image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
        palette.save(shot, optimize=True)
    assert 0 < shot.stat().st_size < SCREENSHOT_MAX_BYTES, f"{shot.stat().st_size} bytes"
    target = os.environ.get("CT_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(target) / name)
    return shot


def axe_source() -> str:
    """axe-core as the axe-playwright-python wheel bundles it (the locked dev dependency)."""
    return (
        importlib.resources.files("axe_playwright_python").joinpath("axe.min.js").read_text("utf-8")
    )


def axe_violations(page, base_url: str) -> list[dict]:
    """axe-core's violations on the page as it is now: {id, impact, help, nodes}. axe is served
    from the page's own origin through page.route, so the strict CSP (script-src 'self') loads it
    as it would any of the page's scripts: no CSP bypass, no inline script."""
    url = base_url + AXE_PATH
    page.route(url, lambda route: route.fulfill(content_type="text/javascript", body=axe_source()))
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(url=url)
    return page.evaluate(
        """async () => {
            const r = await axe.run(document, { resultTypes: ["violations"] });
            return r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => n.target.join(" ")).slice(0, 5) }));
        }"""
    )


def blocking_violations(page, base_url: str) -> list[dict]:
    return [v for v in axe_violations(page, base_url) if v["impact"] in BLOCKING_IMPACTS]


def horizontal_overflow(page) -> int:
    """How many CSS px the page is wider than the viewport (0: no sideways scrolling)."""
    return page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth"
    )


def smallest_plot_text_px(page) -> float:
    """The smallest rendered font size of the plot's text, in CSS px (font size x SVG scale)."""
    return page.evaluate(
        """() => {
            const svg = document.querySelector('#plot svg');
            const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
            const sizes = [...svg.querySelectorAll('text')].map(
                t => parseFloat(getComputedStyle(t).fontSize) * scale);
            return Math.min(...sizes);
        }"""
    )


def smallest_box(page, selector: str) -> dict:
    """The smallest width and height (CSS px) of the visible elements matching `selector`."""
    return page.evaluate(
        """sel => {
            const boxes = [...document.querySelectorAll(sel)].map(e => e.getBoundingClientRect())
                .filter(b => b.width > 0 && b.height > 0);
            return { count: boxes.length, width: Math.min(...boxes.map(b => b.width)),
                     height: Math.min(...boxes.map(b => b.height)) };
        }""",
        selector,
    )


def top_of(page, selector: str) -> float:
    return page.evaluate(
        "sel => document.querySelector(sel).getBoundingClientRect().top + ' / ' + innerHeight",
        selector,
    )


def in_viewport(page, selector: str) -> bool:
    """Whether the element's top edge is inside the viewport (it was brought into sight)."""
    return page.evaluate(
        """sel => { const b = document.querySelector(sel).getBoundingClientRect();
            return b.top >= -1 && b.top < window.innerHeight && b.height > 0; }""",
        selector,
    )


def outline_of(page, selector: str) -> str:
    return page.evaluate(
        "sel => { const s = getComputedStyle(document.querySelector(sel));"
        " return s.outlineStyle + ' ' + s.outlineWidth; }",
        selector,
    )
