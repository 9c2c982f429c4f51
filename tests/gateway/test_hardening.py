"""Small hardening of the Flask app (test client, fake model server): slice names are echoed
without control or bidi characters, OPTIONS on an API route answers a JSON 405 with Allow, and
/readyz answers within one gRPC deadline in total while the model server is frozen."""

from __future__ import annotations

import io
import time
import zipfile

import pytest
from PIL import Image

from gateway.app import EXTENSION, create_app
from gateway.config import Settings
from gateway.series import printable
from tests.fixtures.gateway import json_body

SERIES = "/v1/models/brain-stroke:predict_series"
# Right-to-left override and isolate, RLM, line and paragraph separators, C1 controls (NEL, CSI),
# a BOM. (A zip entry name with C0 controls or DEL is refused whole: gateway/archive.py.)
HOSTILE = ["\u202e", "\u2066", "\u200f", "\u2028", "\u2029", "\x85", "\x9b", "\ufeff"]
DEADLINE_S = 1.0


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (40, 40), 90).save(buf, "PNG")
    return buf.getvalue()


def make_app(target: str, **overrides):
    settings = Settings(
        models=("brain-stroke", "brain-tumor"),
        default_task="brain-stroke",
        model_server=target,
        **overrides,
    )
    return create_app(settings)


@pytest.fixture
def client(fake_model_server):
    app = make_app(fake_model_server.target)
    yield app.test_client()
    app.extensions[EXTENSION].client.close()


def zipped(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name in names:
            archive.writestr(name, png())
    return buf.getvalue()


def test_printable_drops_controls_bidi_and_separators_and_keeps_the_rest():
    assert printable("scan (1)\u202egpj.png") == "scan (1)gpj.png"
    assert printable("".join(HOSTILE) + "ünïcode 脑 1.png") == "ünïcode 脑 1.png"


@pytest.mark.parametrize("how", ["zip", "multipart"])
def test_slice_names_echo_no_control_or_bidi_characters(client, how):
    names = [f"slice {k}{ch}x.png" for k, ch in enumerate(HOSTILE, 1)]
    if how == "zip":
        files = [(io.BytesIO(zipped(names)), "scan.zip")]
    else:
        names = [f"slice {k}{ch}x.png" for k, ch in enumerate(HOSTILE + ["\x1b", "\x7f"], 1)]
        files = [(io.BytesIO(png()), name) for name in names]
    response = client.post(SERIES, data={"image": files}, content_type="multipart/form-data")
    assert response.status_code == 200, response.data
    echoed = [s["name"] for s in json_body(response)["slices"]]
    assert sorted(echoed) == sorted(f"slice {k}x.png" for k in range(1, len(names) + 1))
    raw = response.get_data(as_text=True)
    assert not any(ch in raw for ch in HOSTILE)
    assert "\\u202e" not in raw.lower() and "\\u2028" not in raw.lower()  # not escaped either


@pytest.mark.parametrize(
    "path, allowed",
    [
        ("/v1/models/brain-stroke:predict", {"POST"}),
        ("/v1/models/brain-stroke:predict_series", {"POST"}),
        ("/predict", {"POST"}),
        ("/v1/models", {"GET", "HEAD"}),
    ],
)
def test_options_on_an_api_route_is_a_json_405_with_allow(client, path, allowed):
    response = client.options(path)
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert json_body(response)["error"]["code"] == "method_not_allowed"
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed


def test_readyz_answers_within_one_deadline_while_the_model_server_is_frozen(fake_model_server):
    fake_model_server.delay_s = 4 * DEADLINE_S  # every call hangs past the deadline
    app = make_app(fake_model_server.target, grpc_deadline_s=DEADLINE_S)
    try:
        started = time.monotonic()
        response = app.test_client().get("/readyz")
        seconds = time.monotonic() - started
    finally:
        app.extensions[EXTENSION].client.close()
    print(
        f"\n/readyz with a frozen model server, 2 models: {seconds:.2f} s (deadline {DEADLINE_S})"
    )
    assert response.status_code == 503
    assert set(json_body(response)["models"]) == {"brain-stroke", "brain-tumor"}
    assert seconds < 1.5 * DEADLINE_S
