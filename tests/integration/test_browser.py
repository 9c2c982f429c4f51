"""The web page (GET /) in a real browser against the real stack: Debian's chromium driven by
Playwright, the stand-in model server on model-server/models.config (the committed models) and a
real gateway (gunicorn). What a person sees is checked: the scan verdict, one plot point per slice,
heatmaps that load, the validation and intended-use warnings, error messages; and that the page
logs no console error and no Content-Security-Policy violation.

Chromium: /usr/bin/chromium (`make browser-deps`; CT_CHROMIUM overrides). Without it (or without
the playwright package) the tests skip, unless CT_REQUIRE_BROWSER=1 (.ci/run sets it): then fail.
Screenshot: always written to the test's tmp dir; with CT_SCREENSHOT_DIR set (`make screenshot`)
also to $CT_SCREENSHOT_DIR/web-page.png (docs/screenshots/ is the committed one).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from ct_standin.config import render_config
from tests.fixtures.common import REPO
from tests.fixtures.gateway import running_gateway
from tests.fixtures.model_server import start_model_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("CT_CHROMIUM", "/usr/bin/chromium"))
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
REQUIRE_BROWSER = os.environ.get("CT_REQUIRE_BROWSER", "") not in ("", "0", "false")
COMMITTED_CONFIG = REPO / "model-server" / "models.config"
COMMITTED_MODELS = (
    REPO / "model-server" / "models"
)  # the image's /models (model-server/run_local.py)
SCAN_SLICES = (20, 40)  # a Stroke scan with this many slices
ANSWER_TIMEOUT_MS = 120_000  # first predictions on a busy 2-core machine
SCREENSHOT_NAME = "web-page.png"
SCREENSHOT_MAX_BYTES = 300 * 1024
SLICE_NAME = re.compile(r"^(?P<scan>.+) \((?P<slice>\d+)\)\.[A-Za-z]+$")


def _unavailable(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason} (CT_REQUIRE_BROWSER=1: the browser tests must run)", pytrace=False)
    pytest.skip(reason)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    """A fresh chromium profile (persistent context in a tmp user-data dir)."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"{CHROMIUM} is absent: install it with `make browser-deps` (apt chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (requirements-dev.txt)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 900},
            device_scale_factor=1,
            service_workers="block",
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def committed_stack(tmp_path_factory):
    """Base URL of a gateway in front of the stand-in serving the committed models."""
    config = tmp_path_factory.mktemp("committed") / "models.config"
    config.write_text(render_config(COMMITTED_CONFIG, {"/models": COMMITTED_MODELS}))
    try:
        server = start_model_server(config)
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    try:
        with running_gateway(server.target, CT_WORKERS="1", CT_THREADS="4") as gateway:
            yield gateway.url
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            server.log_path.unlink()


@pytest.fixture(scope="module")
def stroke_scan(shared_datasets) -> list[Path]:
    """The slices of one Stroke scan of brain-stroke-ct with 20..40 slices (the first such scan
    in numeric order), in slice order."""
    folder = shared_datasets / "brain-stroke-ct" / "Stroke"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the brain-stroke dataset is needed")
    scans: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for path in folder.iterdir():
        match = SLICE_NAME.match(path.name)
        if match:
            scans[match["scan"]].append((int(match["slice"]), path))
    low, high = SCAN_SLICES
    fitting = sorted(
        (s for s, files in scans.items() if low <= len(files) <= high),
        key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s),
    )
    if not fitting:
        pytest.skip(f"no Stroke scan with {low}..{high} slices in {folder}")
    return [path for _, path in sorted(scans[fitting[0]])]


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


@pytest.fixture
def page(browser_context, committed_stack):
    page = browser_context.new_page()
    watch = PageWatch(page, committed_stack)
    page.goto(committed_stack + "/")
    page.wait_for_selector("#task:not([disabled])")
    yield page, watch
    page.close()


# ----------------------------------------------------------------------------- helpers


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


# ----------------------------------------------------------------------------- tests


def test_series_upload_shows_the_scan_verdict_plot_and_heatmaps(
    page, committed_stack, stroke_scan, tmp_path
):
    page, watch = page
    model = model_of(committed_stack, "brain-stroke")
    page.select_option("#task", "brain-stroke")
    check_model_warnings(page, model)

    page.set_input_files("#files", [str(p) for p in stroke_scan])
    page.wait_for_selector("#verdict-label", timeout=ANSWER_TIMEOUT_MS)

    # The verdict shown is the API's verdict for the same files.
    answer = post_series(f"{committed_stack}/v1/models/brain-stroke:predict_series", stroke_scan)
    scan = answer["scan"]
    verdict = page.locator("#verdict-label").inner_text()
    if "positive" in scan:
        assert verdict == f"{'Positive' if scan['positive'] else 'Negative'}: {scan['label']}"
    else:
        assert verdict == scan["label"]
    assert page.locator("#verdict .verdict-kind").inner_text().lower() == "scan verdict"

    # One point per slice on the plot, and a threshold line where the scan has a threshold.
    points = page.locator("#plot svg circle.slice-point")
    assert points.count() == len(stroke_scan) == len(answer["slices"])
    assert page.locator("#slice-rows tr").count() == len(stroke_scan)
    if "threshold" in scan:
        assert page.locator("#plot line.scan-threshold").count() == 1
    assert page.locator("#probs li").count() == len(model["labels"])

    if answer.get("validated") is False:
        assert page.locator("#result-warning").is_visible()
    if model.get("explainable", True):
        wait_for_heatmap(page)
        first = int(page.locator("#plot circle.chosen").get_attribute("data-index"))
        other = (first + len(stroke_scan) // 2) % len(stroke_scan)
        page.locator(f'#plot circle[data-index="{other}"]').click()
        wait_for_heatmap(page, other)
        assert page.locator("#plot circle.chosen").get_attribute("data-index") == str(other)
        assert page.locator("#probs-note").inner_text().startswith(f"Slice {other} (")
        # Keyboard: Tab to a point, Enter asks for its heatmap; focus stays on that point.
        keyed = (other + 1) % len(stroke_scan)
        page.focus(f'#plot circle[data-index="{keyed}"]')
        page.keyboard.press("Enter")
        wait_for_heatmap(page, keyed)
        focused = page.evaluate("document.activeElement.getAttribute('data-index')")
        assert focused == str(keyed)
    else:  # a model version without the explain signature: the page says so instead
        assert "no explain signature" in page.locator("#no-heatmap").inner_text()

    save_screenshot(page, tmp_path)
    watch.check()


def test_single_image_shows_its_label_and_heatmap(page, committed_stack, shared_samples):
    page, watch = page
    model = model_of(committed_stack, "brain-stroke")
    page.select_option("#task", "brain-stroke")
    page.set_input_files("#files", str(shared_samples / "brain-stroke_stroke.jpg"))
    page.wait_for_selector("#verdict-label", timeout=ANSWER_TIMEOUT_MS)
    assert page.locator("#verdict .verdict-kind").inner_text().lower() == "image verdict"
    verdict = page.locator("#verdict-label").inner_text()
    assert re.fullmatch(r"(Positive|Negative): (Normal|Stroke)", verdict), verdict
    assert page.locator("#probs li").count() == len(model["labels"])
    assert page.locator("#series").is_hidden()
    if model.get("explainable", True):
        wait_for_heatmap(page)
    watch.check()


def test_a_text_file_shows_the_gateway_error_and_its_hint(page):
    page, watch = page
    page.set_input_files(
        "#files", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"}]
    )
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
    status = int(error.get_attribute("data-status"))
    assert status in (415, 422)
    assert page.locator("#error-title").inner_text().startswith(f"Error {status}")
    assert page.locator("#error-message").inner_text().strip()
    hint = page.locator("#error-hint").inner_text()
    assert ("Unsupported type" if status == 415 else "could not be decoded") in hint
    assert page.locator("#result").is_hidden()
    watch.check(allowed_statuses=(status,))


@pytest.mark.parametrize(
    ("fulfil", "title", "hint"),
    [
        (
            {
                "status": 503,
                "headers": {"Retry-After": "7"},
                "json": {"error": {"code": "unavailable", "message": "model server unavailable"}},
            },  # noqa: E501
            "Error 503 (unavailable)",
            "retrying after 7 s",
        ),
        (
            {"status": 502, "content_type": "text/html", "body": "<h1>Bad gateway</h1>"},
            "Error 502 (http_502)",
            "model server answered with an error",
        ),
        (
            {"status": 200, "content_type": "text/plain", "body": "hello"},
            "Error 200 (not_json)",
            "reload the page",
        ),
        (None, "No answer from the gateway", "could not be reached"),
    ],
    ids=["503-retry-after", "502-not-json", "200-not-json", "network-failure"],
)
def test_proxy_failures_are_explained(page, shared_samples, fulfil, title, hint):
    """What a proxy or a broken network can do, simulated in the browser (page.route)."""
    page, watch = page

    def handle(route):
        if fulfil is None:
            route.abort("connectionreset")
        else:
            route.fulfill(**fulfil)

    page.route(re.compile(r".*/v1/models/[^/]+:(explain|predict)$"), handle)
    page.set_input_files("#files", str(shared_samples / "brain-stroke_normal.jpg"))
    page.locator("#error").wait_for(state="visible")
    assert page.locator("#error-title").inner_text() == title
    assert hint in page.locator("#error-hint").inner_text()
    assert page.locator("#error-message").inner_text().strip()
    statuses = (fulfil["status"],) if fulfil and fulfil["status"] >= 400 else ()
    watch.console_errors = [e for e in watch.console_errors if "ERR_CONNECTION_RESET" not in e]
    watch.check(allowed_statuses=statuses)


def test_a_folder_for_a_multiclass_task_shows_the_mean_verdict(page, shared_datasets, tmp_path):
    """The folder picker (webkitdirectory), hidden files skipped, a task without a scan rule."""
    page, watch = page
    source = shared_datasets / "brain-tumor-ct-mri" / "val" / "mri_glioma"
    if not source.is_dir():
        pytest.skip(f"{source} is absent: the brain-tumor dataset is needed")
    folder = tmp_path / "series"
    folder.mkdir()
    for path in sorted(source.iterdir())[:4]:
        shutil.copyfile(path, folder / path.name)
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    page.select_option("#task", "brain-tumor")
    page.set_input_files("#folder", str(folder))
    page.wait_for_selector("#verdict-label", timeout=ANSWER_TIMEOUT_MS)
    assert "4 files" in page.locator("#selection").inner_text()
    assert "1 hidden or index file(s) skipped" in page.locator("#selection").inner_text()
    assert page.locator("#plot circle.slice-point").count() == 4
    assert page.locator("#plot line.scan-threshold").count() == 0
    labels = model_of(page.url.rstrip("/"), "brain-tumor")["labels"]
    assert page.locator("#verdict-label").inner_text() in labels
    assert "mean" in page.locator("#verdict").inner_text()
    assert page.locator("#probs li").count() == len(labels)
    watch.check()


def test_dropping_a_file_on_the_drop_zone_analyses_it(page, shared_samples):
    page, watch = page
    data = base64.b64encode((shared_samples / "brain-stroke_normal.jpg").read_bytes()).decode()
    page.select_option("#task", "brain-stroke")
    page.evaluate(
        """b64 => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
            const zone = document.getElementById("drop");
            const init = { dataTransfer: dt, bubbles: true, cancelable: true };
            for (const type of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, init));
            }
        }""",
        data,
    )
    page.wait_for_selector("#verdict-label", timeout=ANSWER_TIMEOUT_MS)
    assert "one image (dropped.jpg" in page.locator("#selection").inner_text()
    assert page.locator("#verdict .verdict-kind").inner_text().lower() == "image verdict"
    watch.check()
