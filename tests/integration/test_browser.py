"""The web page (GET /) in a real browser against the real stack: Debian's chromium driven by
Playwright, the stand-in model server on model-server/models.config (the committed models) and a
real gateway (gunicorn). What a person sees is checked: the scan verdict, one plot point per slice,
heatmaps that load, the validation and intended-use warnings, error messages; and that the page
logs no console error and no Content-Security-Policy violation.

Chromium: /usr/bin/chromium (`make browser-deps`; CT_CHROMIUM overrides). Without it (or without
the playwright package) the tests skip, unless CT_REQUIRE_BROWSER=1 (.ci/run sets it): then fail.
Screenshot: always written to the test's tmp dir; with CT_SCREENSHOT_DIR set (`make screenshot`)
also to $CT_SCREENSHOT_DIR/web-page.png (docs/screenshots/ is the committed one).

Layout and accessibility at 1280x800 and 390x844: no sideways scrolling, plot text >= 12 px,
tap targets >= 24 px, focus rings on the right control, and axe-core (the copy bundled by the
locked axe-playwright-python wheel, served from the page's origin) finds no serious or critical
violation.

A little over 400 lines: one browser and one stack shared by every page test (starting chromium
and the committed models costs seconds); the page helpers are in browser_page.py.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.fixtures.gateway import running_gateway
from tests.fixtures.standin import committed_models_config, serving
from tests.integration.browser_page import (
    ANSWER_TIMEOUT_MS,
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    PageWatch,
    blocking_violations,
    check_model_warnings,
    horizontal_overflow,
    in_viewport,
    model_of,
    outline_of,
    post_series,
    save_screenshot,
    scan_with_slices,
    smallest_box,
    smallest_plot_text_px,
    top_of,
    wait_for_heatmap,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("CT_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_BROWSER = os.environ.get("CT_REQUIRE_BROWSER", "") not in ("", "0", "false")
SCAN_SLICES = (20, 40)  # a Stroke scan with this many slices


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
    with serving(committed_models_config(tmp_path_factory.mktemp("committed"))) as server:
        try:
            with running_gateway(server.target, CT_WORKERS="1", CT_THREADS="4") as gateway:
                yield gateway.url
        except RuntimeError as err:
            pytest.fail(str(err), pytrace=False)


@pytest.fixture(scope="module")
def stroke_scan(shared_datasets) -> list[Path]:
    """The slices of one Stroke scan of brain-stroke-ct with 20..40 slices (the first such scan
    in numeric order), in slice order."""
    folder = shared_datasets / "brain-stroke-ct" / "Stroke"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the brain-stroke dataset is needed")
    low, high = SCAN_SLICES
    slices = scan_with_slices(folder, low, high)
    if slices is None:
        pytest.skip(f"no Stroke scan with {low}..{high} slices in {folder}")
    return slices


@pytest.fixture
def page(browser_context, committed_stack):
    page = browser_context.new_page()
    watch = PageWatch(page, committed_stack)
    page.goto(committed_stack + "/")
    page.wait_for_selector("#task:not([disabled])")
    yield page, watch
    page.close()


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


# ----------------------------------------------------------------------------- layout, a11y


def test_the_focus_ring_is_on_the_focused_pickers_own_label(page, committed_stack):
    """Keyboard: Tab from the drop zone reaches 'choose files…' then 'choose a folder…'; the ring
    is drawn on the label of the focused (visually hidden) input, never on its neighbour."""
    page, watch = page
    page.focus("#drop")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "files"
    assert outline_of(page, 'label[for="files"]').startswith("solid")
    assert outline_of(page, 'label[for="folder"]').startswith("none")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "folder"
    assert outline_of(page, 'label[for="folder"]').startswith("solid")
    assert outline_of(page, 'label[for="files"]').startswith("none")
    assert blocking_violations(page, committed_stack) == []
    watch.check()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop-1280x800", "phone-390x844"])
def test_a_scan_at_desktop_and_phone_size(page, committed_stack, stroke_scan, tmp_path, viewport):
    """The scan's page at both sizes: the verdict says how it was reached, the rows say which
    threshold they use, choosing a row brings the heatmap into sight with the focus and an
    announcement, the overlay can be hidden, a colour scale; layout and axe checks."""
    page, watch = page
    page.set_viewport_size(viewport)
    model = model_of(committed_stack, "brain-stroke")
    page.select_option("#task", "brain-stroke")
    page.set_input_files("#files", [str(p) for p in stroke_scan])
    page.wait_for_selector("#verdict-label", timeout=ANSWER_TIMEOUT_MS)
    answer = post_series(f"{committed_stack}/v1/models/brain-stroke:predict_series", stroke_scan)
    scan = answer["scan"]
    n = len(stroke_scan)

    # The verdict explains itself: the rule, the scan threshold, the slices it was taken over.
    verdict = page.locator("#verdict").inner_text()
    assert "How:" in verdict
    if "threshold" in scan:
        assert f"scan threshold {scan['threshold']:.3f}" in verdict
        assert scan["rule"] in verdict
    out = scan.get("out_of_domain_slices", 0)
    assert f"over {n - out} of {n} slices" in verdict
    if out:
        assert f"{out} slice" in verdict and "left out of the verdict" in verdict

    # Each row says which threshold it is called by.
    page.locator("#slice-details summary").click()
    rows = page.locator("#slice-rows tr")
    assert rows.count() == n
    slice_threshold = model.get("threshold")
    if isinstance(slice_threshold, float) and slice_threshold >= 0:
        heading = page.locator("#slice-verdict-heading").inner_text()
        assert f"slice threshold {slice_threshold:.2f}" in heading
        assert f"slice threshold {slice_threshold:.2f}" in rows.nth(0).inner_text()
        assert "scan threshold" in page.locator("#slice-thresholds").inner_text()
    for k, s in enumerate(answer["slices"]):
        if s.get("domain", {}).get("in_domain") is False:
            assert "left out of the scan verdict" in rows.nth(k).inner_text()

    # Layout: no sideways scrolling, 12 px plot text, 24 px targets.
    assert horizontal_overflow(page) <= 0
    assert smallest_plot_text_px(page) >= 12
    buttons = smallest_box(page, "#slice-rows button")
    assert buttons["count"] == n and buttons["width"] >= 24 and buttons["height"] >= 24
    hits = smallest_box(page, "#plot circle.slice-hit")
    assert hits["count"] == n and hits["width"] >= 24 and hits["height"] >= 24
    toggle = smallest_box(page, "#overlay-toggle")
    assert toggle["width"] >= 24 and toggle["height"] >= 24

    if model.get("explainable", True):
        wait_for_heatmap(page)
        # A row far below the heatmap: the view comes into sight, takes the focus, is announced.
        chosen = int(page.locator("#plot circle.chosen").get_attribute("data-index"))
        row = (chosen + n // 2) % n
        button = page.locator(f'#slice-rows button[data-index="{row}"]')
        button.scroll_into_view_if_needed()
        assert not in_viewport(page, "#slice-view")
        button.click()
        wait_for_heatmap(page, row)
        assert in_viewport(page, "#slice-view"), top_of(page, "#slice-view")
        assert page.evaluate("document.activeElement.id") == "slice-view"
        status = page.locator("#status")
        assert status.get_attribute("aria-live") == "polite"
        page.wait_for_function(
            "k => document.getElementById('status').textContent.startsWith(`Slice ${k} (`)",
            arg=row,
        )
        assert "heatmap shown" in status.inner_text()
        assert (
            page.locator(f'#slice-rows button[data-index="{row}"]').get_attribute("aria-pressed")
            == "true"
        )

        # The overlay can be hidden (the picked JPEG itself is shown), and shown again.
        assert page.locator("#colour-scale").is_visible()
        page.locator('label[for="overlay-toggle"]').click()
        page.wait_for_function(
            "() => { const o = document.getElementById('original');"
            " return !o.hidden && o.complete && o.naturalWidth > 0; }"
        )
        assert page.locator("#heatmap").is_hidden()
        assert stroke_scan[row].name in page.locator("#original").get_attribute("alt")
        assert "hidden" in page.locator("#status").inner_text()
        page.locator("#overlay-toggle").check()
        assert page.locator("#heatmap").is_visible() and page.locator("#original").is_hidden()

    assert horizontal_overflow(page) <= 0
    violations = blocking_violations(page, committed_stack)
    assert violations == [], violations
    if viewport == PHONE:  # what a phone shows once a slice is chosen: its verdict and heatmap
        page.locator("#probs-heading").scroll_into_view_if_needed()
        page.evaluate("document.getElementById('slice-view').scrollIntoView({block: 'start'})")
        save_screenshot(page, tmp_path, "web-page-phone.png", full_page=False)
    watch.check()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop-1280x800", "phone-390x844"])
def test_a_single_image_passes_axe_and_fits(page, committed_stack, shared_samples, viewport):
    page, watch = page
    page.set_viewport_size(viewport)
    page.select_option("#task", "brain-stroke")
    page.set_input_files("#files", str(shared_samples / "brain-stroke_stroke.jpg"))
    page.wait_for_selector("#verdict-label", timeout=ANSWER_TIMEOUT_MS)
    assert horizontal_overflow(page) <= 0
    violations = blocking_violations(page, committed_stack)
    assert violations == [], violations
    watch.check()
