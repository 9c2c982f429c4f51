"""TF Serving's documented REST calls, in plain HTTP (urllib), against the stand-in serving the
y = 0.5 x + 2 model: predict row and columnar, b64, classify, regress, status, metadata, labels,
and errors as {"error": ...} with TF Serving's HTTP status codes."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from tests.standin.half_plus_two import NAME, build, half_plus_two, serve

pytestmark = pytest.mark.slow  # TensorFlow in this process

X = [1.0, 2.0, 5.0]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    model_dir = build(tmp_path_factory.mktemp("models") / NAME)
    (model_dir.parent / "models.config").write_text(
        "model_config_list { config {"
        f' name: "{NAME}" base_path: "{model_dir}" model_platform: "tensorflow"'
        " version_labels { key: 'stable' value: 1 } } }\n"
    )
    _, url, stop = serve(model_dir, config=model_dir.parent / "models.config")
    yield f"{url}/v1/models/{NAME}"
    stop()


def call(url: str, body: object = None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["Content-Type"] == "application/json"
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        assert err.headers["Content-Type"] == "application/json"
        return err.code, json.load(err)


def test_predict_row_format(base):
    assert call(f"{base}:predict", {"instances": X}) == (200, {"predictions": half_plus_two(X)})


def test_predict_columnar_format(base):
    assert call(f"{base}:predict", {"inputs": X}) == (200, {"outputs": half_plus_two(X)})
    assert call(f"{base}:predict", {"inputs": {"x": X}}) == (200, {"outputs": half_plus_two(X)})


def test_predict_by_version_and_label(base):
    for path in ("/versions/1", "/labels/stable"):
        assert call(f"{base}{path}:predict", {"instances": X})[0] == 200


def test_predict_named_inputs_and_b64(base):
    labels = [b"\x00\xff", b"ok"]
    instances = [
        {"x": x, "label_bytes": {"b64": base64.b64encode(v).decode()}}
        for x, v in zip(X, labels, strict=False)
    ]
    code, body = call(f"{base}:predict", {"signature_name": "x_and_label", "instances": instances})
    assert code == 200, body
    assert body["predictions"] == [
        {"y": y, "echo_bytes": {"b64": base64.b64encode(v).decode()}}
        for y, v in zip(half_plus_two(X[:2]), labels, strict=True)
    ]
    code, body = call(
        f"{base}:predict",
        {"signature_name": "x_and_label", "inputs": {"x": X[:2], "label_bytes": ["a", "b"]}},
    )
    assert code == 200 and body["outputs"] == {
        "y": half_plus_two(X[:2]),
        "echo_bytes": [{"b64": "YQ=="}, {"b64": "Yg=="}],
    }


def examples(context: bool = False) -> dict:
    body = {"examples": [{"x": x} for x in X]}
    if context:
        body["context"] = {"unused": 1}
    return body


@pytest.mark.parametrize("context", [False, True])
def test_classify_and_regress(base, context):
    body = {"signature_name": "classify_x_to_y", **examples(context)}
    assert call(f"{base}:classify", body) == (
        200,
        {"result": [[["", y]] for y in half_plus_two(X)]},
    )
    body = {"signature_name": "regress_x_to_y", **examples(context)}
    assert call(f"{base}:regress", body) == (200, {"result": half_plus_two(X)})


def test_status_and_metadata(base):
    status = {"version": "1", "state": "AVAILABLE"}
    status["status"] = {"error_code": "OK", "error_message": ""}
    for path in ("", "/versions/1", "/labels/stable"):
        assert call(f"{base}{path}") == (200, {"model_version_status": [status]})
    code, body = call(f"{base}/metadata")
    assert code == 200
    assert body["model_spec"] == {"name": NAME, "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert signatures["regress_x_to_y"]["method_name"] == "tensorflow/serving/regress"
    assert set(signatures["serving_default"]["inputs"]) == {"x"}
    assert call(f"{base}/versions/1/metadata")[0] == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (":predict", {}, 400, "Missing 'inputs' or 'instances' key"),
        (":predict", {"instances": []}, 400, "No values in 'instances' array"),
        (
            ":predict",
            {"instances": X, "inputs": X},
            400,
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist",
        ),
        (
            ":predict",
            {"signature_name": "nope", "instances": X},
            400,  # FAILED_PRECONDITION
            'Serving signature key "nope" not found.',
        ),
        (
            ":classify",
            {"examples": [{"x": 1.0}]},
            400,
            "Expected classification signature method_name to be tensorflow/serving/classify. "
            "Was: tensorflow/serving/predict",
        ),
        (
            ":regress",
            {"signature_name": "regress_x_to_y"},
            400,
            "When method is classify, key 'examples' is expected and was not found",
        ),
        (
            ":regress",
            {"signature_name": "regress_x_to_y", "examples": [{"x": [1.0, 2]}]},
            400,
            "Unexpected element type in feature: x expecting type: float",
        ),
        (":predict", {"instances": [[1.0], [2.0, 3.0]]}, 400, "Failed to process input x"),
        (":predict", {"instances": ["one"]}, 400, "Failed to process input x"),
        ("/versions/9:predict", {"instances": X}, 404, "Servable not found for request: "),
        ("/labels/nope:predict", {"instances": X}, 400, "Unrecognized servable version label"),
    ],
)
def test_errors_are_json_with_tf_serving_status_codes(base, path, body, status, message):
    code, answer = call(f"{base}{path}", body)
    assert code == status
    assert set(answer) == {"error"} and answer["error"].startswith(message), answer


def test_unknown_models_paths_and_bodies(base):
    root = base.rsplit("/", 1)[0]
    assert call(f"{root}/nope:predict", {"instances": X})[0] == 404
    assert call(f"{root}/nope")[0] == 404
    assert call(f"{base}/versions/9")[0] == 404
    assert call(f"{base}:explode", {"instances": X})[0] == 400
    assert call(f"{base}:predict")[0] == 400  # GET of a POST verb: malformed
    code, answer = call(f"{base}:predict", raw=b"{not json")
    assert code == 400 and answer["error"].startswith("JSON Parse error")
