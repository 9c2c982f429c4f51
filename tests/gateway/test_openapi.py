"""GET /openapi.json: every Flask route is documented and every documented route exists; the
document is valid OpenAPI 3.1; real answers (fake model server) match the schemas it names."""

from __future__ import annotations

import io

import jsonschema
import pytest
import schemathesis
from PIL import Image

from gateway.app import EXTENSION, create_app
from gateway.config import Settings
from gateway.models.domain import OutOfDomainError
from gateway.web import openapi

IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture
def app(fake_model_server):
    settings = Settings(
        models=("brain-stroke", "brain-tumor"),
        default_task="brain-stroke",
        model_server=fake_model_server.target,
        grpc_deadline_s=2.0,
    )
    app = create_app(settings)
    yield app
    app.extensions[EXTENSION].client.close()


@pytest.fixture
def document(app) -> dict:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def flask_operations(app) -> set[tuple[str, str]]:
    return {
        (method.lower(), openapi.openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        for method in rule.methods - IGNORED_METHODS
    }


def documented_operations(document: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, ops in document["paths"].items() for method in ops}


def test_every_route_is_documented_and_every_documented_route_exists(app, document) -> None:
    routes, documented = flask_operations(app), documented_operations(document)
    assert routes - documented == set(), "routes missing from /openapi.json"
    assert documented - routes == set(), "documented operations the app does not serve"
    assert ("post", "/v1/models/{task}:predict_series") in routes


def test_rule_to_path() -> None:
    assert openapi.openapi_path("/v1/models/<task:task>:predict") == "/v1/models/{task}:predict"
    assert openapi.openapi_path("/static/<path:filename>") == "/static/{filename}"


def test_document_is_valid_openapi_31(document) -> None:
    assert document["openapi"] == "3.1.0"
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # raises on a document that is not OpenAPI 3.1
    task = document["paths"]["/v1/models/{task}"]["get"]["parameters"][0]
    assert task["schema"]["enum"] == ["brain-stroke", "brain-tumor"]


def validate(document: dict, name: str, body: dict) -> None:
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (40, 30), 128).save(buf, "PNG")
    return buf.getvalue()


def post_image(client, path: str, count: int = 1):
    files = [(io.BytesIO(png()), f"s{k}.png") for k in range(count)]
    return client.post(path, data={"image": files}, content_type="multipart/form-data")


@pytest.mark.parametrize(
    ("path", "name", "count"),
    [
        ("/v1/models/brain-stroke:predict", "Prediction", 1),
        ("/v1/models/brain-tumor:predict", "Prediction", 1),
        ("/v1/models/brain-stroke:predict_series", "Series", 3),
    ],
)
def test_answers_match_their_schema(app, document, path, name, count) -> None:
    response = post_image(app.test_client(), path, count)
    assert response.status_code == 200, response.data
    validate(document, name, response.get_json())


def test_model_list_matches_its_schema(app, document) -> None:
    response = app.test_client().get("/v1/models")
    assert response.status_code == 200, response.data
    validate(document, "Models", response.get_json())


def test_errors_match_the_error_schema(app, document) -> None:
    client = app.test_client()
    for response in (client.get("/v1/models/nope"), post_image(client, "/predict", 0)):
        assert response.status_code >= 400
        validate(document, "Error", response.get_json())
    ood = OutOfDomainError("not a head CT", ood_score=9.5, threshold=3.0).to_dict()
    validate(document, "Error", ood)
    with pytest.raises(jsonschema.ValidationError):
        validate(document, "Error", {"error": {"code": "x"}})


def test_a_wrong_answer_fails_its_schema(document) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(document, "Prediction", {"model": "brain-stroke", "version": "3"})
