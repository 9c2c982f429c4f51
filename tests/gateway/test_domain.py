"""Out-of-domain refusal (gateway/models/domain.py) in-process against the fake model server: DICOM
Modality/BodyPartExamined against the model's declared domain, the model's ood_score against its
threshold, and series with some or most slices out of domain."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from ct_contract import signatures as mc
from gateway.models import info_json
from tests.fixtures.dicom_files import CT_SMALL, edited
from tests.fixtures.gateway import FakeModel, FakeModelServer, json_body
from tests.gateway.test_series import STROKE_INFO, brightness_score, grey_png, make_client

PREDICT = "/v1/models/brain-stroke:predict"
SERIES = "/v1/models/brain-stroke:predict_series"
THRESHOLD = 1.0
DOMAIN = {
    "modalities": ["CT"],
    "body_parts": ["HEAD", "BRAIN"],
    "input": "an axial head CT slice",
    "ood": {"threshold": THRESHOLD, "score": "brightness x 2", "in_domain_acceptance": 0.99},
}


def bright_is_foreign(image: np.ndarray) -> float:
    """ood_score = 2 x mean brightness: grey levels above 127 are out of domain."""
    return 2.0 * float(image.mean()) / 255.0


@pytest.fixture
def client():
    info = {**STROKE_INFO, mc.INFO_DOMAIN: DOMAIN}
    model = FakeModel(info_json=json.dumps(info), score=brightness_score, ood=bright_is_foreign)
    server = FakeModelServer({"brain-stroke": [model]})
    app, test_client = make_client(server, models=("brain-stroke",))
    yield test_client
    server.stop()


def _series(client, levels):
    data = {"image": [(io.BytesIO(grey_png(v)), f"s{k}.png") for k, v in enumerate(levels)]}
    return client.post(SERIES, data=data, content_type="multipart/form-data")


def test_an_in_domain_image_gets_a_verdict_and_its_score(client):
    answer = client.post(PREDICT, data={"image": (io.BytesIO(grey_png(60)), "a.png")})
    body = json_body(answer)
    assert answer.status_code == 200, body
    assert body["domain"] == {
        "ood_score": pytest.approx(120 / 255),
        "threshold": 1.0,
        "in_domain": True,
    }


def test_an_out_of_domain_image_is_refused_with_its_score(client):
    answer = client.post(PREDICT, data={"image": (io.BytesIO(grey_png(250)), "a.png")})
    body = json_body(answer)
    assert answer.status_code == 422
    assert body["error"]["code"] == "out_of_domain"
    assert body["error"]["ood_score"] == pytest.approx(500 / 255)
    assert body["error"]["threshold"] == THRESHOLD
    assert "label" not in body and "probabilities" not in body


def _dicom(modality: str, body_part: str | None = None) -> bytes:
    return edited(
        CT_SMALL, Modality=modality, **({"BodyPartExamined": body_part} if body_part else {})
    )


@pytest.mark.parametrize(
    ("modality", "body_part", "field"), [("MR", None, "modality"), ("CT", "CSPINE", "body_part")]
)
def test_dicom_of_another_modality_or_body_part_is_refused_before_scoring(
    client, modality, body_part, field
):
    answer = client.post(
        PREDICT, data={"image": (io.BytesIO(_dicom(modality, body_part)), "x.dcm")}
    )
    body = json_body(answer)
    assert answer.status_code == 422, body
    assert body["error"]["code"] == "out_of_domain"
    assert body["error"][field] == (modality if field == "modality" else body_part)


def test_dicom_of_the_declared_modality_and_body_part_is_scored(client):
    answer = client.post(PREDICT, data={"image": (io.BytesIO(_dicom("CT", "HEAD")), "x.dcm")})
    assert answer.status_code == 200, json_body(answer)


def test_a_series_leaves_out_of_domain_slices_out_of_the_scan_rule(client):
    body = json_body(_series(client, [40, 60, 250, 80]))
    flags = [s["domain"]["in_domain"] for s in body["slices"]]
    assert flags == [True, True, False, True]
    assert body["scan"]["out_of_domain_slices"] == 1
    # top 25% of the three in-domain slices = the brightest in-domain one (80), not the 250
    assert body["scan"]["probability"] == pytest.approx(80 / 255)
    assert body["scan"]["top_slice"] == 3


def test_a_series_mostly_out_of_domain_is_refused(client):
    answer = _series(client, [40, 250, 240, 230])
    body = json_body(answer)
    assert answer.status_code == 422
    assert body["error"]["code"] == "out_of_domain"
    assert (body["error"]["out_of_domain_slices"], body["error"]["slices"]) == (3, 4)


def test_a_zip_series_is_judged_the_same_way(client):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for k, level in enumerate([40, 250, 60]):
            archive.writestr(f"s{k}.png", grey_png(level))
    data = {"image": (io.BytesIO(buf.getvalue()), "scan.zip")}
    body = json_body(client.post(SERIES, data=data, content_type="multipart/form-data"))
    assert body["scan"]["out_of_domain_slices"] == 1


def test_a_model_that_declares_a_threshold_must_answer_a_score():
    info = {**STROKE_INFO, mc.INFO_DOMAIN: DOMAIN}
    server = FakeModelServer({"brain-stroke": [FakeModel(info_json=json.dumps(info))]})
    try:
        _, test_client = make_client(server, models=("brain-stroke",))
        answer = test_client.post(PREDICT, data={"image": (io.BytesIO(grey_png(60)), "a.png")})
        assert answer.status_code == 502
    finally:
        server.stop()


def test_models_list_shows_the_domain(client):
    (model,) = json_body(client.get("/v1/models"))["models"]
    assert model["domain"]["modalities"] == ["CT"]
    assert model["domain"]["ood"]["threshold"] == THRESHOLD


@pytest.mark.parametrize(
    "domain",
    [
        [],
        {"modalities": "CT"},
        {"modalities": [1]},
        {"modalities": ["CT"], "ood": {"threshold": "high"}},
        {"modalities": ["CT"], "ood": {"threshold": float("inf")}},
        {"modalities": ["CT"], "ood": 3},
    ],
)
def test_a_malformed_domain_makes_the_description_invalid(domain):
    text = json.dumps({mc.INFO_DOMAIN: domain})
    with pytest.raises(info_json.DescriptionError):
        info_json.parse(text, ("Normal", "Stroke"), True)
