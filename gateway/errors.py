"""Gateway errors and the Flask handlers that turn every failure into JSON.

Shape of every error body: {"error": {"code": "<machine code>", "message": "<human text>"}}.
Nothing answers HTML or a stack trace: Flask's own 404/405/413 and unexpected exceptions included.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with the HTTP status, machine code and message the client gets."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class _Preset(ApiError):
    """An ApiError whose status and default code are fixed by the subclass."""

    STATUS = 500
    CODE = "internal"

    def __init__(
        self, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(self.STATUS, code or self.CODE, message, headers)


class BadRequestError(_Preset):
    STATUS, CODE = 400, "bad_request"


class NotFoundError(_Preset):
    STATUS, CODE = 404, "not_found"


class PayloadTooLargeError(_Preset):
    STATUS, CODE = 413, "too_large"


class UnsupportedMediaTypeError(_Preset):
    STATUS, CODE = 415, "unsupported_media_type"


class UnprocessableImageError(_Preset):
    STATUS, CODE = 422, "undecodable_image"


class BadGatewayError(_Preset):
    STATUS, CODE = 502, "model_server_error"


class ServiceUnavailableError(_Preset):
    STATUS, CODE = 503, "unavailable"


class GatewayTimeoutError(_Preset):
    STATUS, CODE = 504, "timeout"


class RequestTimeoutError(_Preset):
    """The client's own request did not arrive in time (gateway/server.py)."""

    STATUS, CODE = 408, "request_timeout"


class BadHttpRequestError(_Preset):
    """Unparsable HTTP (request line, headers, framing): answered by gateway/server.py."""

    STATUS, CODE = 400, "bad_http_request"


class UnauthorizedError(_Preset):
    STATUS, CODE = 401, "unauthorized"


class InternalError(_Preset):
    STATUS, CODE = 500, "internal"


# URL intake (gateway/fetch): the client sent us the URL, so upstream failures are the client's.
class UrlInvalidError(_Preset):
    STATUS, CODE = 400, "url_invalid"


class UrlForbiddenError(_Preset):
    STATUS, CODE = 400, "url_forbidden"


class UrlTooLargeError(_Preset):
    STATUS, CODE = 413, "url_too_large"


class UrlUnreachableError(_Preset):
    STATUS, CODE = 422, "url_unreachable"


class UrlBadStatusError(_Preset):
    STATUS, CODE = 422, "url_bad_status"


class UrlTooManyRedirectsError(_Preset):
    STATUS, CODE = 422, "url_too_many_redirects"


class UrlTimeoutError(_Preset):
    STATUS, CODE = 504, "url_timeout"


# Codes for Flask/werkzeug's own errors (routing, method, body size): the same as our own.
_HTTP_CODES = {
    cls.STATUS: cls.CODE
    for cls in (BadRequestError, NotFoundError, PayloadTooLargeError, UnsupportedMediaTypeError)
} | {405: "method_not_allowed"}


def error_response(error: ApiError) -> Response:
    response = jsonify(error.to_dict())
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def _from_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = _HTTP_CODES.get(status, (exc.name or "error").lower().replace(" ", "_"))
    response = error_response(ApiError(status, code, exc.description or exc.name or "error"))
    if status == 405 and getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _from_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error: %s", type(exc).__name__)
    return error_response(InternalError("internal error; see the gateway log"))


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(HTTPException, _from_http_exception)
    app.register_error_handler(Exception, _from_unexpected)
