"""The gateway's Flask app (routes in docs/api.md). Served by gunicorn: `python -m gateway`."""

from __future__ import annotations

import os
import socket

from flask import Flask, Response, jsonify, request
from werkzeug.routing import BaseConverter

from gateway import answers, auth, intake
from gateway.config import ConfigError, Settings
from gateway.errors import ApiError, ServiceUnavailableError, register_error_handlers
from gateway.models import canary
from gateway.observability import flask_hook, logs, metrics
from gateway.service import Gateway
from gateway.web import openapi, page

EXTENSION = "ct_gateway"
AUTH_EXTENSION = "ct_auth"  # the TokenFile, or None when auth is off
INSTANCE_HEADER = "X-CT-Instance"


class TaskConverter(BaseConverter):
    """A model name: no '/' or ':', so GET /v1/models/x:predict is a 405, not model 'x:predict'."""

    regex = "[^/:]+"


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level)
    app = Flask(__name__, static_folder=page.STATIC_DIR)  # gateway/web/static at /static
    # OPTIONS on an API route: a JSON 405 with Allow (errors.py), not Flask's empty text/html 200.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.url_map.converters["task"] = TaskConverter
    app.json.sort_keys = False  # keep probabilities in label order
    gateway = Gateway(settings)
    app.extensions[EXTENSION] = gateway
    register_error_handlers(app)
    flask_hook.init_app(app, settings)
    try:
        # after the observability hook: 401s are logged and counted
        app.extensions[AUTH_EXTENSION] = auth.init_app(app, settings.auth_tokens_file)
    except auth.TokenFileError as err:
        raise ConfigError(f"CT_AUTH_TOKENS_FILE: {err}") from None
    _register_routes(app, gateway)
    intake.init_app(app, settings)
    page.init_app(app)
    return app


def create_asgi_app(settings: Settings | None = None):
    """The app as gunicorn serves it: Flask behind gateway.server (whole requests, deadlines)."""
    from gateway.server import BufferedWsgi

    settings = settings or Settings.from_env()

    def body_cap(path: str) -> int:
        return intake.caps_for(path, settings).body_bytes

    flask_app = create_app(settings)
    tokens = flask_app.extensions[AUTH_EXTENSION]

    def admit(method: str, authorization: str) -> ApiError | None:
        """The 401 for a body the caller may not send (None: read it)."""
        return None if auth.admits_body(tokens, method, authorization) else auth.unauthorized()

    return BufferedWsgi(
        flask_app,
        settings.threads,
        settings.request_timeout_s,
        body_cap,
        admit,
        header_timeout_s=settings.header_timeout_s,
    )


def _register_routes(app: Flask, gateway: Gateway) -> None:
    settings = gateway.settings

    @app.before_request
    def known_task() -> None:
        """404 for a URL naming a model we do not serve, before its body is parsed or checked."""
        task = (request.view_args or {}).get("task")
        if task is not None:
            gateway.check_task(task)

    @app.post("/v1/models/<task:task>:predict")
    def predict(task: str):
        image = intake.read_image(request, settings)
        return jsonify(gateway.predict(task, image, canary=_canary()))

    @app.post("/v1/models/<task:task>:explain")
    def explain(task: str):
        image = intake.read_image(request, settings)
        return jsonify(gateway.predict(task, image, explain=True, canary=_canary()))

    @app.post("/v1/models/<task:task>:predict_series")
    def predict_series(task: str):
        explain = request.args.get("explain")
        files = intake.read_series(request, settings)
        max_slices = intake.caps_for(request.path, settings).files
        return jsonify(gateway.predict_series(task, files, max_slices, explain, canary=_canary()))

    @app.post("/predict")
    def predict_default():
        image = intake.read_image(request, settings, intake.ALIAS_FIELDS)
        body = gateway.predict(settings.default_task, image, canary=_canary())
        return jsonify(
            answers.seed_answer(body, gateway.model(settings.default_task)["positive_label"])
        )

    @app.get("/v1/models")
    def list_models():
        return jsonify({"models": gateway.models()})

    @app.get("/v1/models/<task:task>")
    def show_model(task: str):
        return jsonify(gateway.model(task))

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    # The pod name in Kubernetes: `ct-triage smoke` checks that the gateway answering its URL is
    # one of the namespace's gateway pods. (/healthz is answered by gateway/server.py itself.)
    identity = {INSTANCE_HEADER: os.environ.get("HOSTNAME") or socket.gethostname()}

    @app.get("/readyz")
    def readyz():
        ready, models = gateway.readiness()
        if ready:
            return jsonify({"status": "ready", "models": models}), 200, identity
        missing = "; ".join(f"{t}: {s['reason']}" for t, s in models.items() if not s["ready"])
        error = ServiceUnavailableError(f"not ready: {missing}", "not_ready")
        return jsonify({**error.to_dict(), "models": models}), 503, identity

    @app.get("/metrics")
    def metrics_endpoint():
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    contract = openapi.document(settings.models)

    @app.get("/openapi.json")
    def openapi_document():
        return jsonify(contract)


def _canary() -> bool | None:
    """X-CT-Canary: 1 forces the canary version, 0 the stable one (gateway/models/canary.py)."""
    return canary.parse_header(request.headers.get(canary.HEADER))
