"""GET / and its static files (gateway/web/page.py, gateway/web/static/): headers, CSP, caching,
and a page that needs nothing from another origin and nothing the CSP forbids. Flask's test client
only; tests/integration/test_browser.py runs the page in a real browser against the real stack."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.app import create_app
from gateway.config import Settings
from gateway.web import page

STATIC = page.STATIC_DIR
EXPECTED_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# XML namespace names are identifiers, never fetched.
NAMESPACES = ("http://www.w3.org/2000/svg",)


@pytest.fixture(scope="module")
def client():
    # No model server is needed: the page and its files never call it.
    app = create_app(
        Settings(models=("brain-stroke",), default_task="brain-stroke", model_server="127.0.0.1:9")
    )
    return app.test_client()


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.script_text.append(data)


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    return parser


def linked_assets(html: str) -> list[str]:
    parser = parse(html)
    return [
        attrs.get("src") or attrs.get("href")
        for tag, attrs in parser.tags
        if tag in ("script", "link") and (attrs.get("src") or attrs.get("href"))
    ]


def test_page_has_the_security_headers(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == EXPECTED_CSP
    assert page.CONTENT_SECURITY_POLICY == EXPECTED_CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers.get("X-Request-ID")  # the gateway's own request id, as on the API


def test_page_is_revalidated_with_its_etag(client):
    first = client.get("/")
    etag = first.headers["ETag"]
    again = client.get("/", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["Content-Security-Policy"] == EXPECTED_CSP
    assert client.head("/").status_code == 200


def test_page_links_versioned_assets_that_are_served_immutable(client):
    html = client.get("/").get_data(as_text=True)
    links = linked_assets(html)
    assert {urlsplit(link).path for link in links} == {f"/static/{a}" for a in page.ASSETS}
    types = {"app.js": "text/javascript", "style.css": "text/css", "favicon.svg": "image/svg+xml"}
    for link in links:
        url = urlsplit(link)
        name = url.path.rsplit("/", 1)[-1]
        assert parse_qs(url.query)["v"] == [page.asset_versions()[name]]
        response = client.get(link)
        assert response.status_code == 200, link
        assert response.mimetype == types[name]
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert response.headers["Content-Security-Policy"] == EXPECTED_CSP
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.get_data() == (STATIC / name).read_bytes()


@pytest.mark.parametrize("query", ["", "?v=0123456789ab"])
def test_unversioned_or_stale_asset_urls_are_revalidated(client, query):
    response = client.get(f"/static/app.js{query}")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers.get("ETag")


def test_missing_static_file_is_a_json_404(client):
    response = client.get("/static/nope.js")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"]


def test_api_responses_keep_their_own_headers(client):
    response = client.get("/healthz")
    assert "Content-Security-Policy" not in response.headers


def test_page_has_no_inline_script_style_or_handlers(client):
    html = client.get("/").get_data(as_text=True)
    parser = parse(html)
    assert not parser.script_text, "inline script: the CSP blocks it"
    for tag, attrs in parser.tags:
        assert tag != "style", "inline <style>: the CSP blocks it"
        assert "style" not in attrs, f"style attribute on <{tag}>: the CSP blocks it"
        handlers = [a for a in attrs if a.startswith("on")]
        assert not handlers, f"inline event handler {handlers} on <{tag}>"
        if tag == "script":
            assert attrs.get("src", "").startswith("/static/")
        for value in attrs.values():
            assert not (value or "").strip().lower().startswith("javascript:")


@pytest.mark.parametrize("name", [page.INDEX_FILE, *page.ASSETS])
def test_static_files_name_no_external_url(name):
    text = (STATIC / name).read_text(encoding="utf-8")
    for namespace in NAMESPACES:
        text = text.replace(namespace, "")
    assert not re.search(r"(?i)\b(?:https?|wss?|ftp):", text), f"{name} names an external URL"
    assert not re.search(r"""["'(]\s*//[\w.-]""", text), f"{name} has a protocol-relative URL"
    assert "@import" not in text


def test_script_does_nothing_the_csp_forbids():
    js = (STATIC / "app.js").read_text(encoding="utf-8")
    for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert forbidden not in js, forbidden
    assert not re.search(r"new\s+Function\s*\(", js)
    assert not re.search(r"""setAttribute\(\s*["']style""", js)
    assert not re.search(r"setTimeout\(\s*[\"'`]", js)


def test_script_calls_the_gateway_api():
    js = (STATIC / "app.js").read_text(encoding="utf-8")
    for piece in ('"/v1/models"', ":${method}", '"explain"', '"predict_series"', "?explain="):
        assert piece in js, piece
    assert 'form.append("image"' in js


def test_page_is_labelled_and_warns(client):
    html = client.get("/").get_data(as_text=True)
    parser = parse(html)
    assert ("html", {"lang": "en"}) in parser.tags
    ids = {attrs.get("id") for _, attrs in parser.tags}
    labelled = {attrs.get("for") for tag, attrs in parser.tags if tag == "label"}
    controls = [attrs["id"] for tag, attrs in parser.tags if tag in ("input", "select")]
    assert controls and set(controls) <= labelled, "every input and select needs a <label for>"
    assert {"task", "files", "folder", "drop", "status", "error", "verdict", "plot"} <= ids
    folder = next(attrs for tag, attrs in parser.tags if attrs.get("id") == "folder")
    assert "webkitdirectory" in folder and "multiple" in folder
    for tag, attrs in parser.tags:
        if tag == "img":
            assert "alt" in attrs
    assert "Not a medical device" in html


def test_each_hidden_file_input_comes_right_before_its_own_label(client):
    """style.css rings `input:focus-visible + .button`: the element after each visually hidden
    file input must be that input's own label, or focusing one ring would light the other's."""
    tags = parse(client.get("/").get_data(as_text=True)).tags
    inputs = [k for k, (tag, attrs) in enumerate(tags) if attrs.get("type") == "file"]
    assert len(inputs) == 2
    for k in inputs:
        tag, attrs = tags[k + 1]
        assert (tag, attrs.get("for"), attrs.get("class")) == ("label", tags[k][1]["id"], "button")
    css = (STATIC / "style.css").read_text()
    assert 'input[type="file"]:focus-visible + .button' in css


def test_render_index_refuses_an_unknown_asset(tmp_path):
    for name in page.ASSETS:
        (tmp_path / name).write_text("x")
    (tmp_path / page.INDEX_FILE).write_text('<script src="{{asset:other.js}}"></script>')
    with pytest.raises(ValueError, match="not in page.ASSETS"):
        page.render_index(tmp_path)
