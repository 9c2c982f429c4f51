"""The Flask app in-process (test client) against the fake model server: routes, intake, errors."""

from __future__ import annotations

import base64
import io
import subprocess

import grpc
import numpy as np
import pytest
from PIL import Image

from ct_contract import signatures as mc
from gateway.app import EXTENSION, create_app
from gateway.config import Settings
from gateway.tfs.tensors import make_ndarray
from tests.fixtures.common import PYTHON, REPO
from tests.fixtures.gateway import FakeModel, json_body

STROKE = "/v1/models/brain-stroke:predict"
TUMOR = "/v1/models/brain-tumor:predict"


def png(width: int = 40, height: int = 30, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def settings(fake_model_server) -> Settings:
    return Settings(models=("brain-stroke", "brain-tumor"), default_task="brain-stroke",
                    model_server=fake_model_server.target, grpc_deadline_s=2.0,
                    max_request_bytes=200_000, max_image_pixels=1_000_000)  # fmt: skip


@pytest.fixture
def client(settings):
    app = create_app(settings)
    yield app.test_client()
    app.extensions[EXTENSION].client.close()


def upload(data: bytes, field: str = "image", name: str = "scan.png") -> dict:
    return {"data": {field: (io.BytesIO(data), name)}, "content_type": "multipart/form-data"}


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    body = json_body(response)
    assert set(body) >= {"error"} and set(body["error"]) == {"code", "message"}
    if code:
        assert body["error"]["code"] == code
    return body


# ----------------------------------------------------------------------------- predictions


def test_binary_prediction(client, fake_model_server) -> None:
    body = json_body(client.post(STROKE, **upload(png())))
    assert body["model"] == "brain-stroke" and body["version"] == 1
    assert body["probabilities"] == pytest.approx({"Normal": 0.55, "Stroke": 0.45})
    assert list(body["probabilities"]) == ["Normal", "Stroke"]
    # 0.45 >= threshold 0.4: positive although Normal has the larger probability
    assert body["positive"] is True and body["label"] == "Stroke"
    assert body["threshold"] == pytest.approx(0.4)
    sent = make_ndarray(fake_model_server.requests[-1].inputs[mc.INPUT_KEY])
    assert sent.shape == (1, 32, 32, 1) and sent.dtype == np.uint8


def test_binary_negative_below_threshold(client, fake_model_server) -> None:
    fake_model_server.models["brain-stroke"][0].probabilities = (0.7, 0.3)
    body = json_body(client.post(STROKE, **upload(png())))
    assert (body["positive"], body["label"]) == (False, "Normal")


def test_multiclass_prediction_has_no_threshold(client) -> None:
    body = json_body(client.post(TUMOR, **upload(png(mode="RGB"))))
    assert body["label"] == "mri_glioma" and len(body["probabilities"]) == 7
    assert "positive" not in body and "threshold" not in body


def test_typed_float_val_responses_are_read(client, fake_model_server) -> None:
    fake_model_server.typed_outputs = True
    body = json_body(client.post(STROKE, **upload(png())))
    assert body["probabilities"]["Stroke"] == pytest.approx(0.45)


def test_json_base64(client) -> None:
    image = base64.b64encode(png()).decode()
    assert client.post(STROKE, json={"image_b64": image}).status_code == 200
    wrapped = "data:image/png;base64," + "\n".join(image[i : i + 60] for i in range(0, 999, 60))
    response = client.post(STROKE, json={"image_b64": wrapped + image[999:]})
    assert response.status_code == 200, response.data


def test_json_url_goes_through_fetch(client, monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(
        "gateway.fetch.fetch_image", lambda url, settings, limit=None: seen.append(url) or png()
    )
    response = client.post(STROKE, json={"url": "https://example.org/scan.png"})
    assert response.status_code == 200 and seen == ["https://example.org/scan.png"]


@pytest.mark.parametrize("field", ["img", "image"])
def test_predict_alias_uses_the_default_task(client, field) -> None:
    body = json_body(client.post("/predict", **upload(png(), field=field)))
    assert body["model"] == "brain-stroke"


def test_response_from_another_version_uses_its_labels(client, fake_model_server) -> None:
    client.post(STROKE, **upload(png()))  # caches version 1
    fake_model_server.models["brain-stroke"].append(FakeModel(version=2, labels=("No", "Yes")))
    body = json_body(client.post(STROKE, **upload(png())))
    assert body["version"] == 2 and set(body["probabilities"]) == {"No", "Yes"}


# ----------------------------------------------------------------------------- client errors


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": {"other": (io.BytesIO(b"x"), "a.png")}, "content_type": "multipart/form-data"},
         400, "missing_field"),
        ({"data": {"image": "text"}, "content_type": "multipart/form-data"}, 400, "bad_request"),
        (upload(b""), 400, "empty_image"),
        ({"data": b"{nope", "content_type": "application/json"}, 400, "malformed_json"),
        ({"json": [1, 2]}, 400, "malformed_json"),
        ({"json": {}}, 400, "missing_field"),
        ({"json": {"url": "http://x", "image_b64": "AAAA"}}, 400, "missing_field"),
        ({"json": {"image_b64": 5}}, 400, "bad_request"),
        ({"json": {"image_b64": "not base64!"}}, 400, "bad_b64"),
        ({"json": {"image_b64": "AAA"}}, 400, "bad_b64"),
        ({"data": png(), "content_type": "image/png"}, 415, "unsupported_media_type"),
        ({"data": "image=1", "content_type": "application/x-www-form-urlencoded"}, 415, None),
        ({}, 415, "unsupported_media_type"),
        (upload(b"this is not an image"), 422, "undecodable_image"),
        (upload(png()[:40]), 422, "undecodable_image"),
        (upload(png(1200, 1000)), 413, "image_too_large"),
        (upload(b"\0" * 300_000), 413, "too_large"),
    ],
)  # fmt: skip
def test_bad_requests(client, kwargs, status, code) -> None:
    assert_error(client.post(STROKE, **kwargs), status, code)


def test_unknown_task_is_404_before_the_body_is_read(client, fake_model_server) -> None:
    assert_error(client.post("/v1/models/nope:predict", **upload(png())), 404, "unknown_model")
    assert_error(client.get("/v1/models/nope"), 404, "unknown_model")
    assert fake_model_server.calls == []


def test_flask_own_errors_are_json(client) -> None:
    assert_error(client.get("/no/such/path"), 404, "not_found")
    response = client.get(STROKE)
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_unexpected_exceptions_are_a_generic_500(client, monkeypatch) -> None:
    def boom(*_args):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("gateway.decoding.to_model_input", boom)
    body = assert_error(client.post(STROKE, **upload(png())), 500, "internal")
    assert "secret" not in body["error"]["message"]


# ----------------------------------------------------------------------------- model server errors


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INVALID_ARGUMENT, 502),
        (grpc.StatusCode.INTERNAL, 502),
        (grpc.StatusCode.NOT_FOUND, 404),
    ],
)
def test_model_server_errors(client, fake_model_server, code, status) -> None:
    client.get("/v1/models")  # metadata cached: the error comes from Predict itself
    fake_model_server.fail_next("Predict", code, code)
    response = client.post(STROKE, **upload(png()))
    assert_error(response, status)
    if status == 503:
        assert response.headers["Retry-After"] == "1"


def test_a_model_breaking_the_contract_is_502(client, fake_model_server) -> None:
    fake_model_server.models["brain-stroke"][0].probabilities = (0.2, 0.3, 0.5)
    assert_error(client.post(STROKE, **upload(png())), 502, "model_contract")


# ----------------------------------------------------------------------------- other routes


def test_models_listing(client) -> None:
    models = json_body(client.get("/v1/models"))["models"]
    assert [m["task"] for m in models] == ["brain-stroke", "brain-tumor"]
    stroke = models[0]
    assert stroke["input_shape"] == [32, 32, 1] and stroke["labels"] == ["Normal", "Stroke"]
    assert stroke["threshold"] == pytest.approx(0.4) and stroke["version"] == 1
    assert models[1]["threshold"] is None
    assert json_body(client.get("/v1/models/brain-tumor"))["input_shape"] == [48, 48, 3]


def test_health_and_readiness(client, fake_model_server) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert json_body(ready)["models"]["brain-stroke"]["available_versions"] == [1]


def test_not_ready_while_a_model_is_loading(client, fake_model_server) -> None:
    fake_model_server.models["brain-tumor"][0].state = 20  # LOADING
    body = assert_error(client.get("/readyz"), 503, "not_ready")
    assert "brain-tumor" in body["error"]["message"] and "LOADING" in body["error"]["message"]
    assert body["models"]["brain-stroke"]["ready"] is True


def test_not_ready_when_a_model_is_missing(settings, fake_model_server) -> None:
    del fake_model_server.models["brain-tumor"]
    app = create_app(settings)
    body = assert_error(app.test_client().get("/readyz"), 503, "not_ready")
    assert body["models"]["brain-tumor"]["ready"] is False
    app.extensions[EXTENSION].client.close()


def test_metrics_count_requests(client) -> None:
    client.post(STROKE, **upload(png()))
    client.post(STROKE, **upload(b"junk"))
    text = client.get("/metrics").data.decode()
    route = "/v1/models/<task:task>:predict"
    assert f'ct_gateway_requests_total{{route="{route}",status="422",task="brain-stroke"}}' in text
    assert (
        'ct_gateway_model_server_call_duration_seconds_count{method="Predict:serving_default"'
        in text
    )


def test_gateway_import_graph_has_no_tensorflow() -> None:
    code = (
        "import sys, gateway.app, gateway.__main__, gateway.client\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras',"
        " 'tensorflow_serving', 'training', 'ct_standin'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "CT_MODELS": "brain-stroke"}
    out = subprocess.run(
        [PYTHON, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("depth", [1_000, 30_000])  # 30k: over the recursion limit, under the cap
def test_deeply_nested_json_is_a_400_not_a_500(client, depth) -> None:
    for body in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        response = client.post(STROKE, data=body, content_type="application/json")
        assert_error(response, 400, "malformed_json")
