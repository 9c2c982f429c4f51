"""The web page for a person (GET /): pick a task, drop images or a DICOM series, see the verdict.

The page is three static files in gateway/web/static/ (index.html, app.js, style.css; no framework,
no external URL) that call the gateway's own JSON API from the browser, so it works offline and
needs no separate front-end server. Security headers: a strict Content-Security-Policy (no inline
script or style, nothing from another origin), nosniff, no referrer, no framing.

Caching: `/` is `no-cache` (always revalidated), and it links the assets with `?v=<content hash>`,
so a versioned asset URL is immutable and cached for a year; an asset asked for without the current
hash is revalidated (ETag) on every use.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Flask, Response, request

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX_FILE = "index.html"
ASSETS = ("app.js", "style.css", "favicon.svg")  # linked from index.html as {{asset:NAME}}

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP level 2
    "Cross-Origin-Opener-Policy": "same-origin",
}
PAGE_CACHE = "no-cache"  # revalidate the page every time: it names the current asset versions
IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
REVALIDATE_CACHE = "no-cache"
PAGE_ENDPOINT = "webpage_index"
STATIC_ENDPOINT = "static"  # Flask's own static route: gateway/web/static/ at /static/


def asset_versions(static_dir: Path = STATIC_DIR) -> dict[str, str]:
    """{asset: first 12 hex digits of its SHA-256}: the `v` query of its URL on the page."""
    return {
        name: hashlib.sha256((static_dir / name).read_bytes()).hexdigest()[:12] for name in ASSETS
    }


def render_index(static_dir: Path = STATIC_DIR) -> tuple[str, dict[str, str]]:
    """index.html with every {{asset:NAME}} replaced by /static/NAME?v=<hash>."""
    versions = asset_versions(static_dir)
    html = (static_dir / INDEX_FILE).read_text(encoding="utf-8")
    for name, version in versions.items():
        html = html.replace(f"{{{{asset:{name}}}}}", f"/static/{name}?v={version}")
    if "{{asset:" in html:
        raise ValueError(f"{INDEX_FILE} links an asset that is not in page.ASSETS")
    return html, versions


def init_app(app: Flask) -> None:
    """Register GET / and the page's headers on `app` (static folder: gateway/web/static)."""
    html, versions = render_index()
    page = html.encode("utf-8")

    @app.get("/", endpoint=PAGE_ENDPOINT)
    def index() -> Response:
        response = Response(page, mimetype="text/html")
        response.headers["Cache-Control"] = PAGE_CACHE
        response.add_etag()
        return response.make_conditional(request)

    @app.after_request
    def page_headers(response: Response) -> Response:
        if request.endpoint not in (PAGE_ENDPOINT, STATIC_ENDPOINT):
            return response
        response.headers.update(SECURITY_HEADERS)
        if request.endpoint == STATIC_ENDPOINT and response.status_code in (200, 304):
            filename = (request.view_args or {}).get("filename", "")
            current = versions.get(filename)
            immutable = current is not None and request.args.get("v") == current
            response.headers["Cache-Control"] = IMMUTABLE_CACHE if immutable else REVALIDATE_CACHE
        return response
