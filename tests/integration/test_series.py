"""Series, DICOM and explain through the real gateway and the real model server stand-in (tiny
exported models with the explain signature), with real slices from ../shared and pydicom's files."""

from __future__ import annotations

import base64
import io
import json
import statistics
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gateway.client import multipart_body
from gateway.series import natural_key
from tests.fixtures.dicom_files import MR_LOSSLESS, read_testfile

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STROKE_SCAN = "58"  # a Stroke scan of 34 slices in brain-stroke-ct


def post(url: str, files: list[tuple[str, bytes]]) -> tuple[int, dict]:
    body, content_type = multipart_body("image", files)
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def scan_slices(datasets: Path, scan: str = STROKE_SCAN) -> list[tuple[str, bytes]]:
    paths = sorted((datasets / "brain-stroke-ct" / "Stroke").glob(f"{scan} (*).jpg"))
    if not paths:
        pytest.skip(f"scan {scan} is not in {datasets / 'brain-stroke-ct'}")
    return [(p.name, p.read_bytes()) for p in paths]


def test_a_real_scan_as_files_and_as_zip(gateway_server, shared_datasets):
    files = scan_slices(shared_datasets)
    url = f"{gateway_server}/v1/models/brain-stroke:predict_series"
    status, body = post(url, list(reversed(files)))
    assert status == 200, body
    assert body["order"] == "file_name"
    names = [s["name"] for s in body["slices"]]
    assert names == sorted(names, key=natural_key) and len(names) == len(files)
    probs = [s["probabilities"]["Stroke"] for s in body["slices"]]
    assert body["scan"]["label"] in ("Normal", "Stroke")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(f"scan-{STROKE_SCAN}/{name}", data)
    status, zipped = post(url, [("scan.zip", buf.getvalue())])
    assert status == 200, zipped
    assert [s["probabilities"]["Stroke"] for s in zipped["slices"]] == probs
    assert zipped["scan"] == body["scan"]


def test_every_slice_scores_as_it_does_alone(gateway_server, shared_datasets):
    files = scan_slices(shared_datasets)[:5]
    status, body = post(f"{gateway_server}/v1/models/brain-stroke:predict_series", files)
    assert status == 200
    by_name = {s["name"]: s["probabilities"] for s in body["slices"]}
    for name, data in files:
        status, alone = post(f"{gateway_server}/v1/models/brain-stroke:predict", [(name, data)])
        assert status == 200
        for label, p in alone["probabilities"].items():
            assert by_name[name][label] == pytest.approx(p, abs=1e-6)


def test_lossless_encodings_of_one_mr_image_give_identical_probabilities(gateway_server):
    answers = {}
    for name in MR_LOSSLESS:
        data = read_testfile(name)
        status, body = post(f"{gateway_server}/v1/models/brain-tumor:predict", [(name, data)])
        assert status == 200, (name, body)
        assert body["modality"] == "MR"
        answers[name] = body["probabilities"]
    first = answers[MR_LOSSLESS[0]]
    assert all(a == first for a in answers.values()), answers


def test_explain_through_the_real_model_server(gateway_server, shared_samples):
    data = (shared_samples / "brain-stroke_stroke.jpg").read_bytes()
    status, body = post(f"{gateway_server}/v1/models/brain-stroke:explain", [("s.jpg", data)])
    assert status == 200, body
    status, plain = post(f"{gateway_server}/v1/models/brain-stroke:predict", [("s.jpg", data)])
    assert plain["probabilities"] == pytest.approx(body["probabilities"], abs=1e-6)
    image = Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"])))
    assert image.format == "PNG" and image.size[0] >= 256 and image.mode == "RGB"
    assert body["heatmap_label"] == "Stroke"


def test_series_latency_is_printed(gateway_server, shared_datasets):
    """Not a timed assertion: prints the 30-slice series latency through the whole stack."""
    files = scan_slices(shared_datasets)[:30]
    url = f"{gateway_server}/v1/models/brain-stroke:predict_series"
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        status, _body = post(url, files)
        timings.append((time.perf_counter() - start) * 1000)
        assert status == 200
    print(f"\n30-slice series (tiny model): median {statistics.median(timings):.0f} ms, "
          f"max {max(timings):.0f} ms")  # fmt: skip
    assert np.all(np.isfinite(timings))
