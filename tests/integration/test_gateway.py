"""The real gateway (`python -m gateway`, gunicorn) in front of the real model server stand-in:
endpoints and answers (error statuses and process lifetime: test_errors.py)."""

from __future__ import annotations

import base64
import functools
import http.client
import http.server
import json
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from ct_contract import signatures as mc
from ct_contract.preprocess import load_model_input
from gateway.config import Settings
from gateway.models.registry import ModelRegistry
from gateway.tfs.client import TfsClient
from gateway.tfs.tensors import make_ndarray
from tests.fixtures.common import PYTHON, REPO, TINY_MODELS, free_port
from tests.fixtures.gateway import running_gateway
from tests.integration.http_helpers import post_file, post_json, predict_url, request

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SAMPLES = {  # sample file -> the task it belongs to
    "brain-stroke_normal.jpg": "brain-stroke",
    "brain-stroke_stroke.jpg": "brain-stroke",
    "brain-tumor_mri_glioma.jpg": "brain-tumor",
    "spine_normal.png": "brain-tumor",  # any image goes through any model
}


@pytest.fixture(scope="module")
def samples_server(shared_samples: Path):
    """A loopback HTTP server over the shared samples (read in place, never copied)."""
    handler = functools.partial(QuietHandler, directory=str(shared_samples))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def direct_client(model_server):
    """Our gRPC client straight at the model server, to compare against the gateway."""
    tasks = tuple(t[0] for t in TINY_MODELS)
    client = TfsClient(
        Settings(models=tasks, default_task=tasks[0], model_server=model_server.target)
    )
    yield client
    client.close()


# ----------------------------------------------------------------------------- endpoints


def test_health_ready_and_models(gateway_server) -> None:
    assert request(f"{gateway_server}/healthz")[0] == 200
    status, body, _ = request(f"{gateway_server}/readyz")
    assert status == 200 and set(body["models"]) == {t[0] for t in TINY_MODELS}
    _, listing, _ = request(f"{gateway_server}/v1/models")
    by_task = {m["task"]: m for m in listing["models"]}
    for task, labels, size, threshold, positive in TINY_MODELS:
        model = by_task[task]
        assert model["labels"] == labels.split(",")
        assert model["input_shape"] == [size, size, 1] and model["version"] == 1
        expected = pytest.approx(threshold) if positive >= 0 else None
        assert model["threshold"] == expected


def test_metadata_parsed_from_the_real_signature_def_map(direct_client) -> None:
    registry = ModelRegistry(direct_client, ttl_s=30)
    for task, labels, size, threshold, positive in TINY_MODELS:
        info = registry.get(task)
        assert info.labels == tuple(labels.split(","))
        assert (info.input_size, info.channels, info.input_dtype) == (size, 1, np.uint8)
        assert info.positive_index == (positive if positive >= 0 else None)
        assert info.threshold == (pytest.approx(threshold) if positive >= 0 else None)


@pytest.mark.parametrize(("sample", "task"), SAMPLES.items())
def test_samples_match_a_direct_model_server_call(
    gateway_server, direct_client, shared_samples, sample, task
) -> None:
    data = (shared_samples / sample).read_bytes()
    status, body, _ = post_file(predict_url(gateway_server, task), data)
    assert status == 200, body
    info = ModelRegistry(direct_client, ttl_s=30).get(task)
    pixels = load_model_input(data, info.input_size, info.channels)
    direct = direct_client.predict(task, {mc.INPUT_KEY: pixels[None]}, mc.PREDICT_SIGNATURE)
    expected = make_ndarray(direct.outputs[mc.PROBABILITIES_KEY])[0]
    assert list(body["probabilities"]) == list(info.labels)
    np.testing.assert_allclose(list(body["probabilities"].values()), expected, rtol=1e-6)
    assert body["label"] in info.labels and body["version"] == 1
    assert ("positive" in body) == info.binary


def test_every_intake_gives_the_same_answer(gateway_server, shared_samples) -> None:
    data = (shared_samples / "brain-stroke_stroke.jpg").read_bytes()
    url = predict_url(gateway_server, "brain-stroke")
    _, by_upload, _ = post_file(url, data)
    status, by_b64, _ = post_json(url, {"image_b64": base64.b64encode(data).decode()})
    assert status == 200 and by_b64 == by_upload
    status, by_alias, _ = post_file(f"{gateway_server}/predict", data, field="img")
    assert status == 200 and by_alias.pop("stroke") is by_upload["positive"]  # the seed's key
    assert by_alias == by_upload


def test_url_intake_with_private_urls_allowed(model_server, samples_server) -> None:
    with running_gateway(model_server.target, CT_URL_ALLOW_PRIVATE="true") as gateway:
        url = f"{samples_server}/brain-stroke_normal.jpg"
        status, body, _ = post_json(predict_url(gateway.url, "brain-stroke"), {"url": url})
        assert status == 200, body
        _, by_alias, _ = post_json(f"{gateway.url}/predict", {"url": url})
        assert by_alias.pop("stroke") is body["positive"]
        assert by_alias == body
        status, missing, _ = post_json(f"{gateway.url}/predict", {"url": url + ".nope"})
        assert status == 422, missing


def test_loopback_urls_are_refused_by_default(gateway_server, samples_server) -> None:
    url = f"{samples_server}/brain-stroke_normal.jpg"
    status, body, _ = post_json(predict_url(gateway_server, "brain-stroke"), {"url": url})
    assert status == 400 and body["error"]["code"] == "url_forbidden"


def test_metrics_sum_over_workers(gateway_server, shared_samples) -> None:
    data = (shared_samples / "spine_fracture.png").read_bytes()
    before = _requests_total(gateway_server, "brain-tumor", "200")
    for _ in range(6):  # two workers: a per-process registry would see only some of these
        assert post_file(predict_url(gateway_server, "brain-tumor"), data)[0] == 200
    assert _requests_total(gateway_server, "brain-tumor", "200") == before + 6


def _requests_total(base: str, task: str, status: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    prefix = "ct_gateway_requests_total{"
    for line in text.splitlines():
        wanted = (f'task="{task}"', f'status="{status}"', ":predict")
        if line.startswith(prefix) and all(part in line for part in wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize(
    "extra", [["--task", "brain-tumor"], ["--task", "brain-stroke", "--b64"], []]
)
def test_cli_client(gateway_server, shared_samples, extra) -> None:
    sample = str(shared_samples / "brain-tumor_mri_glioma.jpg")
    cmd = [PYTHON, "-m", "gateway.client", sample, "--host", gateway_server, *extra]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    expected = "brain-tumor" if "brain-tumor" in extra else "brain-stroke"
    assert json.loads(out.stdout)["model"] == expected
