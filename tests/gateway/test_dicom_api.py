"""DICOM through the HTTP API (Flask test client, fake model server): the model's window, the
anatomical order, mixed series, multi-frame objects, refusals, and no patient data in answers or
logs."""

from __future__ import annotations

import base64
import io
import json
import logging

import numpy as np
import pytest
from pydicom.uid import MPEG2MPML

from ct_contract import signatures as mc
from gateway.app import EXTENSION, create_app
from gateway.config import Settings
from tests.fixtures.dicom_files import (
    PHI,
    dicom_bytes,
    oblique_slice,
    read_testfile,
    with_transfer_syntax,
)
from tests.fixtures.gateway import FakeModel, FakeModelServer, json_body
from tests.gateway.test_series import STROKE_INFO, brightness_score, files_form

PREDICT = "/v1/models/brain-stroke:predict"
SERIES = "/v1/models/brain-stroke:predict_series"
EXPLAIN = "/v1/models/brain-stroke:explain"
SERIES_UID = "1.2.826.0.1.3680043.8.498.1"  # tests.fixtures.dicom_files.dicom_bytes's series


@pytest.fixture
def client():
    fake = FakeModelServer(
        {
            "brain-stroke": [
                FakeModel(
                    size=64, info_json=json.dumps(STROKE_INFO), explain=True, score=brightness_score
                )
            ]
        }
    )
    settings = Settings(
        models=("brain-stroke",),
        default_task="brain-stroke",
        model_server=fake.target,
        max_request_bytes=2_000_000,
        max_series_bytes=8_000_000,
        max_series_slices=20,
    )
    app = create_app(settings)
    yield app.test_client()
    app.extensions[EXTENSION].client.close()
    fake.stop()


def ct_slice(hu: float, **attrs) -> bytes:
    """A 64x64 CT slice of constant `hu` Hounsfield units, stored with intercept -1024."""
    stored = np.full((64, 64), int(round(hu + 1024)), np.uint16)
    return dicom_bytes(stored, RescaleSlope=1, RescaleIntercept=-1024, **attrs)


@pytest.mark.parametrize(("hu", "level"), [(40, 127.5), (0, 0), (80, 255), (-1000, 0), (900, 255)])
def test_the_models_brain_window_maps_hounsfield_units(client, hu, level):
    body = json_body(client.post(PREDICT, **files_form([("slice.dcm", ct_slice(hu))])))
    assert body["modality"] == "CT"
    assert body["probabilities"]["Stroke"] == pytest.approx(level / 255, abs=1 / 255)


def test_a_real_ct_file_by_upload_and_base64_gives_the_same_answer(client):
    data = read_testfile("CT_small.dcm")
    upload = json_body(client.post(PREDICT, **files_form([("x.jpg", data)])))  # name lies
    by_b64 = json_body(client.post(PREDICT, json={"image_b64": base64.b64encode(data).decode()}))
    assert upload == by_b64 and upload["modality"] == "CT"


def test_series_is_ordered_by_position_along_the_normal_not_by_name(client):
    # names run against the anatomy: file "a" is the highest slice
    files = [(f"{'edcba'[i]}.dcm", oblique_slice(i, 2.5)) for i in (2, 0, 4, 1, 3)]
    body = json_body(client.post(SERIES, **files_form(files)))
    assert body["order"] == "image_position"
    assert [s["name"] for s in body["slices"]] == ["e.dcm", "d.dcm", "c.dcm", "b.dcm", "a.dcm"]


def test_series_falls_back_to_instance_numbers(client):
    files = [(f"{k}.dcm", ct_slice(10 * k, InstanceNumber=10 - k)) for k in range(4)]
    body = json_body(client.post(SERIES, **files_form(files)))
    assert body["order"] == "instance_number"
    assert [s["name"] for s in body["slices"]] == ["3.dcm", "2.dcm", "1.dcm", "0.dcm"]


def test_mixed_series_and_mixed_kinds_are_422(client):
    other = ct_slice(10, SeriesInstanceUID="1.2.3.4.99")
    response = client.post(SERIES, **files_form([("a.dcm", ct_slice(10)), ("b.dcm", other)]))
    assert response.status_code == 422
    assert json_body(response)["error"]["code"] == "mixed_series"
    assert "2 different DICOM series" in json_body(response)["error"]["message"]
    png = io.BytesIO()
    from PIL import Image

    Image.new("L", (8, 8)).save(png, "PNG")
    response = client.post(
        SERIES, **files_form([("a.dcm", ct_slice(1)), ("b.png", png.getvalue())])
    )
    assert response.status_code == 422 and json_body(response)["error"]["code"] == "mixed_series"


def test_multi_frame_is_a_series_of_frames(client):
    frames = np.stack([np.full((64, 64), 1024 + hu, np.uint16) for hu in (80, 0, 40)])
    data = dicom_bytes(frames, RescaleSlope=1, RescaleIntercept=-1024)
    response = client.post(PREDICT, **files_form([("multi.dcm", data)]))
    assert response.status_code == 422 and json_body(response)["error"]["code"] == "multi_frame"
    body = json_body(client.post(SERIES, **files_form([("multi.dcm", data)])))
    assert [s["name"] for s in body["slices"]] == ["multi.dcm#0", "multi.dcm#1", "multi.dcm#2"]
    stroke = [s["probabilities"]["Stroke"] for s in body["slices"]]
    np.testing.assert_allclose(stroke, [1.0, 0.0, 0.5], atol=1 / 255)


def test_frames_count_against_the_series_cap(client):
    frames = np.zeros((21, 4, 4), np.uint16)
    response = client.post(SERIES, **files_form([("multi.dcm", dicom_bytes(frames))]))
    assert response.status_code == 413


def test_undecodable_transfer_syntax_is_415_naming_it(client):
    data = with_transfer_syntax(MPEG2MPML)
    for url in (PREDICT, SERIES):
        response = client.post(url, **files_form([("mpeg.dcm", data)]))
        assert response.status_code == 415, response.data
        assert str(MPEG2MPML) in json_body(response)["error"]["message"]


def test_truncated_and_oversized_dicom(client):
    data = read_testfile("CT_small.dcm")
    response = client.post(PREDICT, **files_form([("cut.dcm", data[: len(data) // 2])]))
    assert response.status_code == 422
    huge = dicom_bytes(np.zeros((2, 4), np.uint16), Rows=60000, Columns=60000)
    assert client.post(PREDICT, **files_form([("huge.dcm", huge)])).status_code == 413


def test_no_patient_data_in_answers_or_logs(client, caplog, capfd):
    phi = {**PHI}
    slices = [ct_slice(10 * k, InstanceNumber=k + 1, **phi) for k in range(3)]
    caplog.set_level(logging.DEBUG)
    mixed = [("a.dcm", slices[0]), ("b.dcm", ct_slice(1, SeriesInstanceUID="1.2.3.77", **phi))]
    answers = [
        client.post(PREDICT, **files_form([("a.dcm", slices[0])])),
        client.post(EXPLAIN, **files_form([("a.dcm", slices[0])])),
        client.post(
            SERIES + "?explain=top", **files_form([(f"{k}.dcm", s) for k, s in enumerate(slices)])
        ),
        client.post(SERIES, **files_form(mixed)),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 422]
    out, err = capfd.readouterr()
    seen = "".join(a.get_data(as_text=True) for a in answers) + caplog.text + out + err
    for value in [*phi.values(), SERIES_UID, "1.2.3.77", "Zyxwvu", "Qponml"]:
        assert value not in seen, f"{value!r} leaked"
    allowed = {"model", "version", "label", "probabilities", "positive", "threshold", "modality"}
    assert set(json_body(answers[0])) <= allowed | {"validated", "validated_reason"}
    assert mc.HEATMAP_KEY not in json_body(answers[1])
