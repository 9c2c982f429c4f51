"""Series, explain, findings and the seed alias in-process (Flask test client) against the fake
model server: the scan rule read from the model, order, batching, caps, zip intake, heatmaps.

A little over 300 lines: the series API in one place, sharing its fake server and its zip and
form builders."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from ct_contract import signatures as mc
from gateway.app import EXTENSION, create_app
from gateway.config import Settings
from gateway.tfs.tensors import make_ndarray
from tests.fixtures.gateway import FakeModel, FakeModelServer, json_body, tumour_model

SERIES = "/v1/models/brain-stroke:predict_series"
TUMOR_SERIES = "/v1/models/brain-tumor:predict_series"
STROKE_INFO = {
    mc.INFO_WINDOW: {"center": 40, "width": 80, "name": "brain"},
    mc.INFO_SCAN_RULE: {
        "aggregation": "top_fraction_mean",
        "top_fraction": 0.25,
        "threshold": 0.5,
        "description": "mean of the top 25% of slice probabilities of the scan",
    },
    mc.INFO_VALIDATION: {"how": "repeated grouped hold-out", "scan_auc": 0.6},
    mc.INFO_VALIDATED: False,
    mc.INFO_VALIDATED_REASON: "scan AUC 0.60 is below the 0.80 floor",
}
TUMOR_GROUPS = {
    "tumour": ["ct_tumor", "mri_glioma", "mri_meningioma", "mri_pituitary", "mri_tumor"],
    "no tumour": ["ct_healthy", "mri_healthy"],
}


def brightness_score(image: np.ndarray) -> list[float]:
    """P(Stroke) = mean brightness / 255: a slice's grey level sets its score."""
    p = float(image.mean()) / 255.0
    return [1.0 - p, p]


def grey_png(level: int, size: int = 40) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (size, size), level).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def fake():
    server = FakeModelServer(
        {
            "brain-stroke": [
                FakeModel(info_json=json.dumps(STROKE_INFO), explain=True, score=brightness_score)
            ],
            "brain-tumor": [
                tumour_model(
                    probabilities=(0.3, 0.1, 0.2, 0.1, 0.1, 0.1, 0.1),
                    info_json=json.dumps({mc.INFO_LABEL_GROUPS: TUMOR_GROUPS}),
                )
            ],
        }
    )
    yield server
    server.stop()


def make_client(fake: FakeModelServer, **overrides):
    values = {
        "models": ("brain-stroke", "brain-tumor"),
        "default_task": "brain-stroke",
        "model_server": fake.target,
        "grpc_deadline_s": 5.0,
        "max_request_bytes": 200_000,
        "max_series_bytes": 2_000_000,
        "max_series_slices": 40,
        "max_batch_size": 4,
    } | overrides
    app = create_app(Settings(**values))
    return app, app.test_client()


@pytest.fixture
def client(fake):
    app, test_client = make_client(fake)
    yield test_client
    app.extensions[EXTENSION].client.close()


def files_form(files: list[tuple[str, bytes]]) -> dict:
    return {
        "data": {"image": [(io.BytesIO(data), name) for name, data in files]},
        "content_type": "multipart/form-data",
    }


def zipped(files: list[tuple[str, bytes]], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buf.getvalue()


# Slice k of a 10-slice scan has grey level 20 * k, sent in a scrambled order.
LEVELS = {f"scan ({k}).png": 20 * k for k in range(1, 11)}
SCRAMBLED = [(name, grey_png(LEVELS[name])) for name in sorted(LEVELS)]  # (1), (10), (2), ...


def test_series_orders_by_natural_file_name_and_applies_the_models_scan_rule(client, fake):
    response = client.post(SERIES, **files_form(SCRAMBLED))
    assert response.status_code == 200, response.data
    body = json_body(response)
    assert body["order"] == "file_name"
    assert [s["name"] for s in body["slices"]] == [f"scan ({k}).png" for k in range(1, 11)]
    stroke = np.array([s["probabilities"]["Stroke"] for s in body["slices"]])
    np.testing.assert_allclose(stroke, [20 * k / 255 for k in range(1, 11)], atol=1e-6)
    # mean of the top quarter: round(0.25 * 10) = 2 slices, levels 200 and 180
    scan = body["scan"]
    assert scan["probability"] == pytest.approx((200 + 180) / 2 / 255, abs=1e-6)
    assert scan["threshold"] == 0.5 and scan["positive"] is True and scan["label"] == "Stroke"
    assert scan["rule"] == STROKE_INFO[mc.INFO_SCAN_RULE]["description"]
    assert body["validated"] is False and "0.80 floor" in body["validated_reason"]


def test_series_goes_in_predicts_of_at_most_the_max_batch_size(client, fake):
    before = len(fake.requests)
    assert client.post(SERIES, **files_form(SCRAMBLED)).status_code == 200
    serving = [
        r for r in fake.requests[before:] if r.model_spec.signature_name == mc.PREDICT_SIGNATURE
    ]
    assert [make_ndarray(r.inputs[mc.INPUT_KEY]).shape[0] for r in serving] == [4, 4, 2]
    pinned = [r.model_spec.version.value for r in serving[1:]]
    assert pinned and all(v == 1 for v in pinned), "later chunks ask for the first one's version"


def test_a_zip_gives_the_same_answer_as_the_files(client):
    direct = json_body(client.post(SERIES, **files_form(SCRAMBLED)))
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        body = json_body(
            client.post(SERIES, **files_form([("s.zip", zipped(SCRAMBLED, compression))]))
        )
        assert body["scan"] == direct["scan"] and body["slices"] == direct["slices"]


def test_a_zip_by_base64_json_works_too(client):
    payload = {"image_b64": base64.b64encode(zipped(SCRAMBLED)).decode()}
    response = client.post(SERIES, json=payload)
    assert response.status_code == 200, response.data
    assert len(json_body(response)["slices"]) == 10


def test_zip_skips_folders_and_archiver_litter_and_keeps_folder_names(client):
    files = [("scan/" + n, d) for n, d in SCRAMBLED[:3]]
    files += [("__MACOSX/scan/._x.png", b"junk"), ("scan/.DS_Store", b"junk"), ("DICOMDIR", b"x")]
    body = json_body(client.post(SERIES, **files_form([("s.zip", zipped(files))])))
    assert [s["name"] for s in body["slices"]] == [
        "scan/scan (1).png",
        "scan/scan (2).png",
        "scan/scan (10).png",
    ]


@pytest.mark.parametrize(
    ("members", "status", "code"),
    [
        ([("../evil.png", grey_png(1))], 422, "bad_archive"),
        ([("/abs.png", grey_png(1))], 422, "bad_archive"),
        ([("inner.zip", zipped([("a.png", grey_png(1))]))], 422, "bad_archive"),
        ([], 422, "empty_series"),
        ([(f"s{k}.png", grey_png(1)) for k in range(41)], 413, "too_many_slices"),
        ([("zeros.bin", bytes(1_500_000)), ("zeros2.bin", bytes(1_500_000))], 413, None),
    ],
    ids=["dotdot", "absolute", "nested", "empty", "too-many-entries", "over-total"],
)
def test_zip_guards(client, members, status, code):
    response = client.post(SERIES, **files_form([("s.zip", zipped(members))]))
    assert response.status_code == status, response.data
    if code:
        assert json_body(response)["error"]["code"] == code


def test_zip_bomb_ratio_is_refused_before_inflating(client):
    response = client.post(
        SERIES, **files_form([("bomb.zip", zipped([("a.bin", bytes(1_900_000))]))])
    )
    assert response.status_code == 413
    assert "inflates" in json_body(response)["error"]["message"]


def test_a_zip_that_understates_its_inflated_size_is_refused(client):
    data = bytearray(zipped([("a.png", grey_png(10))]))
    central = data.index(b"PK\x01\x02")
    data[central + 24 : central + 28] = (8).to_bytes(4, "little")  # declared uncompressed size
    response = client.post(SERIES, **files_form([("s.zip", bytes(data))]))
    assert response.status_code in (413, 422), response.data
    assert json_body(response)["error"]["code"] in ("bad_archive", "too_large")


def test_too_many_files_and_too_large_bodies_are_413(fake):
    app, client = make_client(fake, max_series_slices=5, max_series_bytes=50_000)
    try:
        response = client.post(SERIES, **files_form(SCRAMBLED))
        assert (
            response.status_code == 413
            and json_body(response)["error"]["code"] == "too_many_slices"
        )
        big = [("a.png", grey_png(1, size=10)), ("b.bin", np.random.default_rng(0).bytes(60_000))]
        assert client.post(SERIES, **files_form(big)).status_code == 413
    finally:
        app.extensions[EXTENSION].client.close()


def test_one_bad_slice_names_the_file(client):
    files = SCRAMBLED[:3] + [("broken.png", b"\x89PNG\r\n\x1a\nnot really")]
    response = client.post(SERIES, **files_form(files))
    assert response.status_code == 422
    assert "broken.png" in json_body(response)["error"]["message"]


def test_series_without_a_scan_rule_aggregates_per_label_and_says_so(client):
    files = [(f"t{k}.png", grey_png(50)) for k in range(3)]
    body = json_body(client.post(TUMOR_SERIES, **files_form(files)))
    scan = body["scan"]
    assert "threshold" not in scan and "positive" not in scan
    assert "no scan rule" in scan["rule"]
    assert scan["label"] == "ct_healthy"
    assert scan["probabilities"]["ct_healthy"] == pytest.approx(0.3, abs=1e-6)
    assert scan["finding"] == {"label": "tumour", "probability": pytest.approx(0.6, abs=1e-6)}
    assert body["slices"][0]["finding"]["label"] == "tumour"


def test_grouped_task_single_answer_carries_the_finding(client):
    response = client.post(
        "/v1/models/brain-tumor:predict", **files_form([("a.png", grey_png(50))])
    )
    body = json_body(response)
    assert body["label"] == "ct_healthy"
    assert body["finding"] == {"label": "tumour", "probability": pytest.approx(0.6, abs=1e-6)}


def test_models_list_shows_the_self_description(client):
    models = {m["task"]: m for m in json_body(client.get("/v1/models"))["models"]}
    stroke = models["brain-stroke"]
    assert stroke["window"] == {"center": 40.0, "width": 80.0, "name": "brain"}
    assert stroke["scan_rule"]["threshold"] == 0.5 and stroke["explainable"] is True
    assert stroke["validated"] is False
    assert models["brain-tumor"]["label_groups"] == TUMOR_GROUPS
    assert models["brain-tumor"]["explainable"] is False
    assert stroke["endpoints"] == {
        "predict": "/v1/models/brain-stroke:predict",
        "predict_series": "/v1/models/brain-stroke:predict_series",
        "explain": "/v1/models/brain-stroke:explain",
    }
    assert "explain" not in models["brain-tumor"]["endpoints"]


def _png_size(b64: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(b64))).size


def test_explain_answers_the_prediction_and_a_heatmap_png(client):
    response = client.post(
        "/v1/models/brain-stroke:explain", **files_form([("a.png", grey_png(90))])
    )
    assert response.status_code == 200, response.data
    body = json_body(response)
    assert body["probabilities"]["Stroke"] == pytest.approx(90 / 255, abs=1e-6)
    assert body["heatmap_label"] == "Stroke"
    image = Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"]))).convert("RGB")
    pixels = np.asarray(image, dtype=np.float64)
    # the fake's heatmap is hot in its top-left cell only
    corner, far = pixels[:32, :32].mean(axis=(0, 1)), pixels[-32:, -32:].mean(axis=(0, 1))
    assert corner[0] > far[0] + 50, (corner, far)


def test_series_explains_the_top_slice_or_a_chosen_one(client):
    body = json_body(client.post(SERIES + "?explain=top", **files_form(SCRAMBLED)))
    assert body["explained"]["index"] == 9 == body["scan"]["top_slice"]
    assert _png_size(body["explained"]["heatmap_png"])[0] >= 256
    body = json_body(client.post(SERIES + "?explain=3", **files_form(SCRAMBLED)))
    assert body["explained"]["index"] == 3
    for bad in ("11", "-1", "x"):
        response = client.post(SERIES + f"?explain={bad}", **files_form(SCRAMBLED))
        assert response.status_code == 400 and json_body(response)["error"]["code"] == "bad_explain"


def test_explain_on_a_model_without_the_signature_is_a_clear_404(client):
    response = client.post("/v1/models/brain-tumor:explain", **files_form([("a.png", grey_png(9))]))
    assert response.status_code == 404
    assert json_body(response)["error"]["code"] == "not_explainable"


def test_seed_alias_answers_the_positive_label_as_a_key(client):
    # as the stroke seed's README posts: field "img" to /predict
    high = client.post("/predict", data={"img": (io.BytesIO(grey_png(250)), "x.jpg")},
                       content_type="multipart/form-data")  # fmt: skip
    low = client.post("/predict", data={"img": (io.BytesIO(grey_png(5)), "x.jpg")},
                      content_type="multipart/form-data")  # fmt: skip
    assert json_body(high)["stroke"] is True and json_body(low)["stroke"] is False
    assert json_body(high)["positive"] is True


def test_an_old_model_without_info_json_still_serves(fake):
    fake.models["brain-stroke"] = [FakeModel(score=brightness_score)]
    app, client = make_client(fake)
    try:
        body = json_body(client.post(SERIES, **files_form(SCRAMBLED)))
        assert "threshold" not in body["scan"] and "validated" not in body
        assert body["scan"]["label"] == "Normal"  # mean P(Stroke) 0.43 < P(Normal)
    finally:
        app.extensions[EXTENSION].client.close()


@pytest.mark.parametrize(
    "info",
    [
        "not json",
        json.dumps([1]),
        json.dumps({mc.INFO_WINDOW: {"center": 40, "width": 0}}),
        json.dumps(
            {mc.INFO_SCAN_RULE: {"aggregation": "max", "top_fraction": 1, "threshold": 0.5}}
        ),
        json.dumps({mc.INFO_LABEL_GROUPS: {"a": ["Normal"]}}),
        json.dumps({mc.INFO_VALIDATED: "yes"}),
    ],
)
def test_a_malformed_self_description_is_a_502_not_half_applied(fake, info):
    fake.models["brain-stroke"] = [FakeModel(info_json=info)]
    app, client = make_client(fake)
    try:
        response = client.post(SERIES, **files_form(SCRAMBLED[:2]))
        assert response.status_code == 502
        assert json_body(response)["error"]["code"] == "model_contract"
    finally:
        app.extensions[EXTENSION].client.close()
