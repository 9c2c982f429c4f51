"""Read the files of a request: multipart upload, JSON base64 or JSON URL, a series or a zip.

`caps_for` is the one place that says how much a request may carry (bytes, files, form parts): the
server (gateway/server.py, via app.create_asgi_app) stops reading a body as soon as it is over the
cap and answers 413, and `init_app` hands the same caps to werkzeug for every request. There a
chunked body is read at most one byte past the cap. That byte matters: werkzeug's
max_content_length stream silently stops AT its limit, so the request's limit is cap + 1 and an
over-long body shows up here as cap + 1 bytes instead of a truncated (and misparsed) body.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass

import flask
from flask import Flask, Request
from werkzeug.wrappers import Request as WerkzeugRequest

from gateway import archive, fetch
from gateway.archive import Member
from gateway.config import Settings
from gateway.errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError

IMAGE_FIELD = "image"
ALIAS_FIELDS = ("img", IMAGE_FIELD)  # the seed project's /predict used `img`
JSON_KEYS = ("url", "image_b64")
_SUPPORTED = "multipart/form-data (file field {fields}) or application/json ({keys})"
SERIES_ROUTE = ":predict_series"  # the one route that takes many files


@dataclass(frozen=True)
class Caps:
    """What one request may carry; 413 above any of these."""

    body_bytes: int  # the request body, and a series zip's inflated content
    files: int  # uploads, zip entries and decoded slices (each frame of a multi-frame file)
    form_parts: int  # multipart parts werkzeug parses


def caps_for(path: str, settings: Settings) -> Caps:
    """The caps of a request to `path`: CT_MAX_SERIES_BYTES and CT_MAX_SERIES_SLICES for a
    series (room for that many files as form parts), CT_MAX_REQUEST_BYTES and one file otherwise."""
    if path.endswith(SERIES_ROUTE):
        slices = settings.max_series_slices
        return Caps(settings.max_series_bytes, slices, 2 * slices + 16)
    return Caps(settings.max_request_bytes, 1, WerkzeugRequest.max_form_parts)


def init_app(app: Flask, settings: Settings) -> None:
    """Give werkzeug each request's caps before anything reads its body or form."""

    @app.before_request
    def apply_caps() -> None:
        caps = caps_for(flask.request.path, settings)
        flask.request.max_content_length = caps.body_bytes + 1  # one byte over: see the docstring
        flask.request.max_form_parts = caps.form_parts


def read_image(
    request: Request, settings: Settings, fields: Sequence[str] = (IMAGE_FIELD,)
) -> bytes:
    """The image bytes the request carries; ApiError (400/413/415) when it carries none."""
    limit = caps_for(request.path, settings).body_bytes
    _check_size(request, limit)
    if request.mimetype == "multipart/form-data":
        return _from_multipart(request, fields)
    if request.is_json:
        return _from_json(request, settings, limit)
    supported = _SUPPORTED.format(fields=" or ".join(fields), keys=" or ".join(JSON_KEYS))
    got = request.mimetype or "no Content-Type"
    raise UnsupportedMediaTypeError(f"unsupported content type {got!r}; send {supported}")


def read_series(request: Request, settings: Settings) -> list[Member]:
    """The files of one series: repeated multipart `image` fields, or one zip (multipart or JSON).

    Caps (`caps_for`): bytes for the body and for the zip's inflated content, and files (413). A
    request that carries one picture is a series of one.
    """
    caps = caps_for(request.path, settings)
    limit = caps.body_bytes
    _check_size(request, limit)
    if request.mimetype == "multipart/form-data":
        uploads = request.files.getlist(IMAGE_FIELD)
        if len(uploads) > caps.files:
            raise PayloadTooLargeError(
                f"{len(uploads)} files, more than the {caps.files} slices allowed",
                "too_many_slices",
            )
        members = [Member(_upload_name(u.filename, k), u.read()) for k, u in enumerate(uploads)]
        if not members:
            _from_multipart(request, (IMAGE_FIELD,))  # raises the right 400
    elif request.is_json:
        members = [Member("image", _from_json(request, settings, limit))]
    else:
        read_image(request, settings)  # raises the right 415
    for member in members:
        if not member.data:
            raise BadRequestError(f"the uploaded file {member.name!r} is empty", "empty_image")
    if len(members) == 1 and archive.is_zip(members[0].data):
        return archive.read_zip(members[0].data, caps.files, limit)
    return members


def _upload_name(filename: str | None, index: int) -> str:
    """A slice's name for the answer: the client's file name without control characters."""
    name = "".join(ch for ch in (filename or "") if ch.isprintable())[: archive.MAX_NAME_CHARS]
    return name or f"image-{index + 1}"


def _check_size(request: Request, limit: int) -> None:
    """413 for a body over `limit`; reads (and caches, for form parsing) a chunked body."""
    size = request.content_length
    if size is None and (request.mimetype == "multipart/form-data" or request.is_json):
        size = len(request.get_data(cache=True))
    if size is not None and size > limit:
        raise PayloadTooLargeError(f"request body is over the {limit} bytes allowed")


def _from_multipart(request: Request, fields: Sequence[str]) -> bytes:
    for field in fields:
        upload = request.files.get(field)
        if upload is not None:
            data = upload.read()
            if not data:
                raise BadRequestError(f"the uploaded file {field!r} is empty", "empty_image")
            return data
    for field in fields:
        if field in request.form:
            raise BadRequestError(f"{field!r} must be a file upload, not a text field")
    raise BadRequestError(
        f"multipart request has no file field {' or '.join(map(repr, fields))}", "missing_field"
    )


def _from_json(request: Request, settings: Settings, limit: int) -> bytes:
    try:
        body = json.loads(request.get_data(cache=True))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"malformed JSON body: {exc}", "malformed_json") from None
    except RecursionError:  # [[[[...]]]] nested past the parser's recursion limit
        raise BadRequestError("JSON body is nested too deeply", "malformed_json") from None
    if not isinstance(body, dict):
        raise BadRequestError("JSON body must be an object", "malformed_json")
    present = [key for key in JSON_KEYS if key in body]
    if len(present) != 1:
        raise BadRequestError(
            f"JSON body must have exactly one of {' or '.join(JSON_KEYS)}", "missing_field"
        )
    value = body[present[0]]
    if not isinstance(value, str) or not value.strip():
        raise BadRequestError(f"{present[0]!r} must be a non-empty string")
    if present[0] == "url":
        return fetch.fetch_image(value.strip(), settings, limit)
    return decode_b64(value)


def decode_b64(text: str) -> bytes:
    """Strict standard base64 (whitespace and a data: URL prefix allowed); 400 otherwise."""
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise BadRequestError("image_b64 data URL must be data:<type>;base64,<data>", "bad_b64")
    compact = "".join(text.split())
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequestError(f"image_b64 is not valid base64: {exc}", "bad_b64") from None
    if not data:
        raise BadRequestError("image_b64 is empty", "empty_image")
    return data
