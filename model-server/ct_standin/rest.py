"""TF Serving's REST API (tensorflow.org/tfx/serving/api_rest) and its Prometheus metrics path.

  GET  /v1/models/<m>[/versions/N|/labels/L]            model status
  GET  /v1/models/<m>[/versions/N|/labels/L]/metadata   signature defs
  POST /v1/models/<m>[/versions/N|/labels/L]:predict    row `instances` or columnar `inputs`
  POST /v1/models/<m>[/versions/N|/labels/L]:classify   `examples` (+ `context`)
  POST /v1/models/<m>[/versions/N|/labels/L]:regress    `examples` (+ `context`)

Errors are {"error": "<message>"} with the HTTP status TF Serving maps each gRPC code to.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from ct_standin import inference, rest_json
from ct_standin.errors import ServingError
from ct_standin.metrics import Metrics
from ct_standin.registry import Registry
from ct_standin.tensors import to_tensor_proto

log = logging.getLogger(__name__)

METRICS_PATH = "/monitoring/prometheus/metrics"
_MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<verb>/metadata|:predict|:classify|:regress)?/?$"
)
_CODE = grpc.StatusCode
# TF Serving's ToHTTPStatusCode (model_servers/http_rest_api_handler / http_server).
HTTP_STATUS = {
    _CODE.OK: 200,
    _CODE.CANCELLED: 499,
    _CODE.UNKNOWN: 500,
    _CODE.INVALID_ARGUMENT: 400,
    _CODE.DEADLINE_EXCEEDED: 504,
    _CODE.NOT_FOUND: 404,
    _CODE.ALREADY_EXISTS: 409,
    _CODE.PERMISSION_DENIED: 403,
    _CODE.RESOURCE_EXHAUSTED: 429,
    _CODE.FAILED_PRECONDITION: 400,
    _CODE.ABORTED: 409,
    _CODE.OUT_OF_RANGE: 400,
    _CODE.UNIMPLEMENTED: 501,
    _CODE.INTERNAL: 500,
    _CODE.UNAVAILABLE: 503,
    _CODE.DATA_LOSS: 500,
    _CODE.UNAUTHENTICATED: 401,
}
_API = {"": "get_model_status", "/metadata": "get_model_metadata"}


def model_status_json(registry: Registry, name: str, version: int | None) -> dict:
    return {
        "model_version_status": [
            {
                "version": str(number),
                "state": state.state,
                "status": {
                    "error_code": "UNKNOWN" if state.error else "OK",
                    "error_message": state.error,
                },
            }
            for number, state in registry.status(name, version)
        ]
    }


class _Api:
    """The answers of the REST API; each returns a JSON-able dict or raises ServingError."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def status(self, name: str, version: int | None, label: str) -> dict:
        if label:
            version, _ = self.registry.resolve(name, label=label)
        return model_status_json(self.registry, name, version)

    def metadata(self, name: str, version: int | None, label: str) -> dict:
        number, servable = self.registry.resolve(name, version, label)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signatures.signature_def[key].CopyFrom(signature)
        return {
            "model_spec": {"name": name, "signature_name": "", "version": str(number)},
            "metadata": {
                "signature_def": json_format.MessageToDict(
                    signatures, preserving_proto_field_name=True
                )
            },
        }

    def predict(self, name: str, version: int | None, label: str, body: dict) -> dict:
        _, servable = self.registry.resolve(name, version, label)
        signature_name = _signature_name(body) or inference.DEFAULT_SIGNATURE
        specs = servable.signature(signature_name).inputs
        arrays, row_format = rest_json.predict_inputs(body, specs)
        protos = {key: to_tensor_proto(array, True) for key, array in arrays.items()}
        _, outputs = servable.predict(protos, signature_name)
        return rest_json.predict_json(outputs, row_format)

    def classify(self, name: str, version: int | None, label: str, body: dict) -> dict:
        _, servable = self.registry.resolve(name, version, label)
        request_input = rest_json.examples_input(body)
        _, result = inference.classify(servable, _signature_name(body), request_input)
        return rest_json.classify_json(result)

    def regress(self, name: str, version: int | None, label: str, body: dict) -> dict:
        _, servable = self.registry.resolve(name, version, label)
        request_input = rest_json.examples_input(body)
        _, result = inference.regress(servable, _signature_name(body), request_input)
        return rest_json.regress_json(result)


def _signature_name(body: dict) -> str:
    name = body.get("signature_name", "")
    if not isinstance(name, str):
        raise ServingError(_CODE.INVALID_ARGUMENT, "'signature_name' key must be a string value.")
    return name


def _parse_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as err:
        raise ServingError(_CODE.INVALID_ARGUMENT, f"JSON Parse error: {err}") from err
    if not isinstance(body, dict):
        raise ServingError(_CODE.INVALID_ARGUMENT, "JSON Value: request body is not an object")
    return body


def _handler(registry: Registry, metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    api = _Api(registry)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as TF Serving's server

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?", 1)[0] == METRICS_PATH:
                return self._send(200, metrics.render().encode(), "text/plain; version=0.0.4")
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?", 1)[0]
            if not path.lower().startswith("/v1/"):  # TF Serving's dispatcher leaves these alone
                return self._json(404, {"error": f"Not found: {method} {path}"})
            match = _MODEL_PATH.match(path)
            verb = (match["verb"] or "") if match else None
            wanted = "GET" if verb in ("", "/metadata") else "POST"
            if match is None or method != wanted:
                return self._json(400, {"error": f"Malformed request: {method} {path}"})
            started = time.perf_counter()
            code = _CODE.OK
            try:
                answer = self._answer(match, verb, raw)
            except ServingError as err:
                code, answer = err.code, {"error": err.message}
            except Exception as err:  # never let a request take the server down
                log.exception("REST %s %s failed", method, path)
                code, answer = _CODE.INTERNAL, {"error": f"{type(err).__name__}: {err}"}
            model = match["name"] if match["name"] in registry.names else ""
            api_name = _API.get(verb) or verb.lstrip(":")
            metrics.record(model, api_name, code.name, time.perf_counter() - started, "REST")
            self._json(HTTP_STATUS.get(code, 500), answer)

        def _answer(self, match: re.Match, verb: str, raw: bytes) -> dict:
            version = int(match["version"]) if match["version"] else None
            where = (match["name"], version, match["label"] or "")
            if verb == "":
                return api.status(*where)
            if verb == "/metadata":
                return api.metadata(*where)
            return getattr(api, verb.lstrip(":"))(*where, _parse_body(raw))

        def _json(self, status: int, body: dict) -> None:
            self._send(status, json.dumps(body, indent=1).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            log.debug("REST %s", format % args)

    return Handler


def start_rest_server(
    registry: Registry, metrics: Metrics, port: int, host: str = "0.0.0.0"
) -> ThreadingHTTPServer:
    """Serve REST on a daemon thread; call .shutdown() to stop."""
    server = ThreadingHTTPServer((host, port), _handler(registry, metrics))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    return server
