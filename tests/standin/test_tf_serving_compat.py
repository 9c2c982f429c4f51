"""The committed SavedModels load and answer the same under the TensorFlow of the pinned
tensorflow/serving image (`ct-triage tf-compat`, ct_local/tf_compat/), and that pin is read from
one place: the FROM line of model-server/Dockerfile.

The integration test builds build/venv-tf-<version>/ on its first run (tensorflow-cpu from PyPI,
several minutes) and reuses it afterwards. Without PyPI it fails rather than skips: the proof that
the served models work under TF Serving's TensorFlow must not silently go missing in CI.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from ct_local.tf_compat.__main__ import EXIT_ENV
from ct_local.tf_compat.compare import compare
from ct_local.tf_compat.pin import PinError, parse_serving_version, serving_version
from tests.fixtures.common import PYTHON, REPO

TF_COMPAT = [PYTHON, "-m", "ct_local.cli", "tf-compat"]
DOCKERFILE = REPO / "model-server" / "Dockerfile"
# First run: venv creation + a ~260 MB wheel + both probes on two shared cores.
RUN_TIMEOUT_S = 600


def test_the_pin_is_the_dockerfile_from_tag():
    (tag,) = re.findall(r"^FROM tensorflow/serving:(\S+)\s*$", DOCKERFILE.read_text(), re.M)
    assert serving_version() == tag
    assert serving_version(DOCKERFILE) == tag


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("FROM tensorflow/serving:2.20.0\n", "2.20.0"),
        ("# FROM tensorflow/serving:1.0.0\nfrom tensorflow/serving:2.19.1 AS serve\n", "2.19.1"),
        ("FROM tensorflow/serving:2.20.0-gpu\n", "2.20.0"),
        ("FROM --platform=linux/amd64 tensorflow/serving:2.18.0@sha256:0123abcd\n", "2.18.0"),
        ("FROM docker.io/tensorflow/serving:2.17.1\n", "2.17.1"),
        ("FROM mirror.local:5000/tensorflow/serving:2.16.1\n", "2.16.1"),
        ("FROM python:3.11-slim AS build\nRUN true\nFROM tensorflow/serving:2.20.0\n", "2.20.0"),
        ("FROM \\\n    tensorflow/serving:2.20.0\n", "2.20.0"),
    ],
)
def test_from_line_parsing(text, version):
    assert parse_serving_version(text) == version


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no `FROM tensorflow/serving"),
        ("FROM python:3.11\n", "no `FROM tensorflow/serving"),
        ("# FROM tensorflow/serving:2.20.0\nFROM ubuntu:24.04\n", "no `FROM tensorflow/serving"),
        ("FROM tensorflow/serving\n", "pins no TF Serving version"),
        ("FROM tensorflow/serving:latest\n", "pins no TF Serving version"),
        ("FROM tensorflow/serving@sha256:0123abcd\n", "pins no TF Serving version"),
        ("FROM tensorflow/serving-extra:2.20.0\n", "no `FROM tensorflow/serving"),
        (
            "FROM tensorflow/serving:2.19.0 AS a\nFROM tensorflow/serving:2.20.0\n",
            "several TF Serving versions",
        ),
    ],
)
def test_from_line_parsing_fails_clearly(text, why):
    with pytest.raises(PinError, match=re.escape(why)):
        parse_serving_version(text)


def test_missing_dockerfile_fails_clearly(tmp_path):
    with pytest.raises(PinError, match="cannot read"):
        serving_version(tmp_path / "Dockerfile")


def _probe_result(probabilities, heatmap, labels, tf_version="x"):
    image = {"image": {"shape": [2, 2, 2, 1], "dtype": "uint8", "sha256": "00"}}
    return {
        "tf_version": tf_version,
        "models": {
            "brain-stroke/3": {
                "signatures_present": ["explain", "model_info", "serving_default"],
                "signatures": {
                    "serving_default": {
                        "inputs": image,
                        "outputs": {
                            "probabilities": {
                                "dtype": "float32",
                                "shape": [1, 2],
                                "values": [probabilities],
                            }
                        },
                    },
                    "explain": {
                        "inputs": image,
                        "outputs": {
                            "heatmap": {"dtype": "float32", "shape": [1, 1], "values": [[heatmap]]}
                        },
                    },
                    "model_info": {
                        "inputs": {},
                        "outputs": {
                            "labels": {"dtype": "string", "shape": [1, 2], "values": [labels]}
                        },
                    },
                },
            }
        },
    }


def test_compare_accepts_differences_within_the_tolerances():
    reference = _probe_result([0.25, 0.75], 0.5, ["Normal", "Stroke"])
    candidate = _probe_result([0.25 + 9e-6, 0.75 - 9e-6], 0.5 + 9e-5, ["Normal", "Stroke"])
    rows, problems = compare(reference, candidate)
    assert problems == []
    assert len(rows) == 3 and all(r["ok"] for r in rows)
    assert max(r["max_abs_diff"] for r in rows) == pytest.approx(9e-5)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda c: c["probabilities"].__setitem__(0, 0.25 + 2e-5), "probabilities: max abs diff"),
        (lambda c: c.__setitem__("heatmap", 0.5 + 2e-4), "heatmap: max abs diff"),
        (lambda c: c["labels"].__setitem__(1, "stroke"), "labels: values differ"),
        (lambda c: c["probabilities"].__setitem__(0, float("nan")), "probabilities: values"),
    ],
)
def test_compare_names_each_mismatch(change, named):
    reference = _probe_result([0.25, 0.75], 0.5, ["Normal", "Stroke"])
    values = {"probabilities": [0.25, 0.75], "heatmap": 0.5, "labels": ["Normal", "Stroke"]}
    change(values)
    candidate = _probe_result(**values)
    _, problems = compare(reference, candidate)
    assert len(problems) == 1 and named in problems[0] and "brain-stroke/3" in problems[0]


def test_compare_names_missing_outputs_signatures_and_load_errors():
    reference = _probe_result([0.25, 0.75], 0.5, ["Normal", "Stroke"])
    candidate = _probe_result([0.25, 0.75], 0.5, ["Normal", "Stroke"])
    model = candidate["models"]["brain-stroke/3"]
    del model["signatures"]["explain"]["outputs"]["heatmap"]
    model["signatures"]["serving_default"]["outputs"]["probabilities"]["shape"] = [2, 1]
    del model["signatures"]["model_info"]
    _, problems = compare(reference, candidate)
    assert any("explain heatmap: missing under the candidate" in p for p in problems)
    assert any("serving_default probabilities: float32[1, 2]" in p for p in problems)
    assert any("model_info: run under one TensorFlow only" in p for p in problems)

    candidate["models"]["brain-stroke/3"] = {"load_error": "OpError: no such op"}
    _, problems = compare(reference, candidate)
    assert problems == ["brain-stroke/3: does not load under the candidate: OpError: no such op"]


@pytest.mark.integration
@pytest.mark.slow
def test_committed_models_agree_under_the_pinned_tf_serving_version(tmp_path):
    report_path = tmp_path / "tf-compat.json"
    done = subprocess.run(
        [*TF_COMPAT, "--report", str(report_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    said = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    if done.returncode == EXIT_ENV:
        pytest.fail(
            "the TensorFlow of the pinned TF Serving image could not be installed or run, so "
            "the committed models are not proven to load under it (this test needs PyPI to "
            f"build build/venv-tf-<version>/ once; it does not skip):\n{said}",
            pytrace=False,
        )
    assert done.returncode == 0, said

    report = json.loads(report_path.read_text())
    pinned = serving_version()
    assert report["serving_version"] == pinned
    assert report["version"] == pinned and report["version_source"].endswith("Dockerfile")
    assert report["candidate"]["tf_version"] == pinned, said
    assert report["venv"]["path"] == f"build/venv-tf-{pinned}"
    assert report["ok"] and not report["problems"]

    committed = sorted(
        f"{task.name}/{version.name}"
        for task in (REPO / "model-server" / "models").iterdir()
        if task.is_dir()
        for version in task.iterdir()
        if version.name.isdigit()
    )
    assert report["models"] == committed
    checked = {(r["model"], r["signature"]) for r in report["rows"]}
    for model in committed:  # every version answered predictions and described itself
        assert {(model, "serving_default"), (model, "model_info")} <= checked, model
