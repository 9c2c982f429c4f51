"""The gateway's OpenAPI 3.1 document, served at GET /openapi.json.

Written next to the routes (gateway/app.py, gateway/web/page.py) and kept honest by tests:
tests/gateway/test_openapi.py checks every Flask route is documented and every documented one
exists; tests/integration/test_openapi_live.py runs schemathesis against a live gateway.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import metadata

from gateway.web import openapi_schemas as s

JSON = "application/json"
# Every status an image route may answer, with the codes docs/api.md's error table explains.
IMAGE_ERRORS = {
    "400": "malformed request: bad_request, malformed_json, empty_image, bad_b64, missing_field, "
    "url_invalid, url_forbidden, bad_explain",
    "401": "unauthorized (CT_AUTH_TOKENS_FILE set, no valid bearer token)",
    "404": "unknown_model, model_not_found, not_found, not_explainable",
    "405": "method_not_allowed",
    "408": "request_timeout: the body did not arrive within CT_REQUEST_TIMEOUT_S",
    "413": "too_large, image_too_large, memory_budget, url_too_large, too_many_slices",
    "415": "unsupported_media_type, unsupported_transfer_syntax",
    "422": "undecodable_image, out_of_domain, multi_frame, mixed_series, bad_archive, "
    "empty_series, url_unreachable, url_bad_status, url_too_many_redirects",
    "502": "model_server_error, model_rejected, model_contract",
    "503": "model_server_unavailable (with Retry-After)",
    "504": "timeout, url_timeout",
}
READ_ERRORS = {k: IMAGE_ERRORS[k] for k in ("401", "404", "405", "502", "503", "504")}
_RULE_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def openapi_path(rule: str) -> str:
    """A werkzeug rule as an OpenAPI path: /v1/models/<task:task>:x -> /v1/models/{task}:x."""
    return _RULE_ARGUMENT.sub(r"{\1}", rule)


def document(tasks: Sequence[str]) -> dict:
    """The whole document; `tasks` (CT_MODELS) are the values the {task} parameter takes."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ct-triage gateway",
            "version": _version(),
            "description": "Medical scan classifiers behind a Flask gateway. Not a medical device.",
        },
        "paths": _paths(tasks),
        "components": {
            "schemas": s.COMPONENTS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _version() -> str:
    try:
        return metadata.version("ct-triage")
    except metadata.PackageNotFoundError:  # the gateway image installs the lock, not the project
        return "unknown"


def _paths(tasks: Sequence[str]) -> dict:
    task = {
        "name": "task",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": list(tasks)},
    }
    image_ops = {
        "predict": ("one image or single-frame DICOM object", "Prediction", False),
        "explain": ("one image: the predict answer plus a Grad-CAM heatmap", "Explanation", False),
        "predict_series": ("the slices of one scan (repeated fields or one zip)", "Series", True),
    }
    paths = {
        f"/v1/models/{{task}}:{verb}": {
            "post": _image_op(summary, schema, many, [task], _explain_param() if many else None)
        }
        for verb, (summary, schema, many) in image_ops.items()
    }
    alias = "the default task (CT_DEFAULT_TASK), seed-compatible: field `img` or `image`"
    paths["/predict"] = {"post": _image_op(alias, "SeedPrediction", False, [], None)}
    paths["/v1/models"] = {"get": _read_op("the served models", "Models")}
    paths["/v1/models/{task}"] = {"get": _read_op("one served model", "Model", [task])}
    paths.update(_operational_paths())
    return paths


def _explain_param() -> dict:
    return {
        "name": "explain",
        "in": "query",
        "required": False,
        "description": "`top` or a slice index: adds `explained`, that slice's heatmap",
        "schema": {"type": "string"},
    }


def _json_answer(description: str, schema: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": s.ref(schema)}}}


def _errors(statuses: dict[str, str]) -> dict:
    return {status: _json_answer(text, "Error") for status, text in statuses.items()}


def _image_op(summary: str, schema: str, many: bool, params: list, extra: dict | None) -> dict:
    fields = ("image",) if many or params else ("img", "image")
    body = {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": s.multipart(fields, many)},
            JSON: {"schema": s.ref("ImageJson")},
        },
    }
    return {
        "summary": summary,
        "parameters": params + ([extra] if extra else []),
        "requestBody": body,
        "security": [{}, {"bearer": []}],
        "responses": {"200": _json_answer("the answer", schema), **_errors(IMAGE_ERRORS)},
    }


def _read_op(summary: str, schema: str, params: list | None = None) -> dict:
    return {
        "summary": summary,
        "parameters": params or [],
        "security": [{}, {"bearer": []}],
        "responses": {"200": _json_answer(summary, schema), **_errors(READ_ERRORS)},
    }


def _operational_paths() -> dict:
    not_allowed = _errors({"405": "method_not_allowed"})
    text = {"text/plain": {"schema": {"type": "string"}}}
    return {
        "/healthz": {"get": _open_op("liveness", _json_answer("the process serves", "StatusOk"))},
        "/readyz": {
            "get": _open_op(
                "readiness: every configured model AVAILABLE",
                _json_answer("ready", "Ready"),
                {"503": _json_answer("not ready, and why", "NotReady")},
            )
        },
        "/metrics": {"get": _open_op("Prometheus metrics", {"description": "", "content": text})},
        "/openapi.json": {
            "get": _open_op("this document", {"description": "", "content": {JSON: {}}})
        },
        "/": {
            "get": _open_op(
                "the web page",
                {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
            )
        },
        "/static/{filename}": {
            "get": {
                **_open_op(
                    "the web page's files", {"description": "a file", "content": {"*/*": {}}}
                ),
                "parameters": [
                    {
                        "name": "filename",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {"description": "a file", "content": {"*/*": {}}},
                    **_errors({"404": "not_found"}),
                    **not_allowed,
                },
            }
        },
    }


def _open_op(summary: str, ok: dict, more: dict | None = None) -> dict:
    """An operation open without a token, that answers `ok` (or 405)."""
    responses = {"200": ok, **(more or {}), **_errors({"405": "method_not_allowed"})}
    return {"summary": summary, "security": [], "responses": responses}
