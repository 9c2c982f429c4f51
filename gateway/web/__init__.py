"""The web page (page.py, static/) and the API contract document (openapi.py)."""
