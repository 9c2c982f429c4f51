"""The web page for a person (GET /). Placeholder until the page lands."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the page's routes on `app`."""
