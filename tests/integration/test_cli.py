"""The installed `ct-triage` command against a live gateway (tiny models): a file, a folder, a
zip, a DICOM object, the model list; an unknown task exits 1 with the error answer."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.common import PYTHON, REPO
from tests.fixtures.dicom_files import CT_SMALL, sample_path

pytestmark = pytest.mark.integration
COMMAND = Path(PYTHON).parent / "ct-triage"
SAMPLES = REPO / "docs" / "samples"


def ct_triage(*args: str, url: str) -> tuple[int, dict]:
    if not COMMAND.exists():
        pytest.fail(f"{COMMAND} is missing: `make venv` installs the console script")
    out = subprocess.run(
        [str(COMMAND), *args, "--url", url], capture_output=True, text=True, timeout=120
    )
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scan")
    for k, name in enumerate(["brain-stroke_normal.jpg", "brain-stroke_stroke.jpg"] * 2):
        shutil.copy(SAMPLES / name, folder / f"slice ({k + 1}).jpg")
    return folder


def test_predict_a_file(gateway_server) -> None:
    status, body = ct_triage(
        "predict", str(SAMPLES / "brain-stroke_stroke.jpg"), "--task", "brain-stroke",
        url=gateway_server,
    )  # fmt: skip
    assert (status, body["model"], set(body["probabilities"])) == (
        0,
        "brain-stroke",
        {"Normal", "Stroke"},
    )


def test_predict_a_folder_and_a_zip(gateway_server, scan, tmp_path) -> None:
    archive = tmp_path / "scan.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(scan.iterdir()):
            zf.write(path, path.name)
    for source in (scan, archive):
        status, body = ct_triage(
            "predict", str(source), "--task", "brain-stroke", url=gateway_server
        )
        assert status == 0, body
        assert [s["name"] for s in body["slices"]] == [f"slice ({k}).jpg" for k in range(1, 5)]


def test_predict_a_dicom_object(gateway_server) -> None:
    status, body = ct_triage(
        "predict", str(sample_path(CT_SMALL)), "--task", "brain-stroke", url=gateway_server
    )
    assert (status, body.get("modality")) == (0, "CT"), body


def test_models_and_an_unknown_task(gateway_server) -> None:
    status, body = ct_triage("models", url=gateway_server)
    assert status == 0
    assert {m["task"] for m in body["models"]} == {"brain-stroke", "brain-tumor"}
    sample = str(SAMPLES / "brain-stroke_stroke.jpg")
    status, body = ct_triage("predict", sample, "--task", "nope", url=gateway_server)
    assert (status, body["error"]["code"]) == (1, "unknown_model")
