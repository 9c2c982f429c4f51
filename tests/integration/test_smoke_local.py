"""`ct-triage smoke`, the kind smoke test's checker, run against the local stand-in + gateway stack.

The same script runs in CI against the kind cluster (make kind-smoke); here it proves the script
and the gateway agree on the API, and that the script fails loudly when the gateway is absent.
"""

from __future__ import annotations

import io

import pytest

from ct_local.smoke.checks import check_prediction
from ct_local.smoke.client import SmokeError
from ct_local.smoke.golden import GOLDEN_FILE
from ct_local.smoke.inputs import synthetic_png
from tests.fixtures.common import TINY_MODELS, free_port

# Other lanes imported these from here; they live in tests/fixtures/smoke.py now.
from tests.fixtures.smoke import run_smoke


@pytest.mark.integration
def test_smoke_passes_against_the_local_stack(gateway_server, tiny_models_root):
    # training/export/savedmodel.py wrote each tiny version's golden (python -m training.golden's
    # function).
    for task, *_ in TINY_MODELS:
        assert (tiny_models_root / task / "1" / GOLDEN_FILE).is_file()
    result = run_smoke(
        "--base-url", gateway_server, "--timeout", "60", "--models-dir", str(tiny_models_root)
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    out = result.stdout
    assert "ok   GET /readyz -> 200" in out
    for task, *_ in TINY_MODELS:
        assert f"ok   {task}: v" in out, out
    assert out.rstrip().endswith("smoke test passed")


def test_smoke_fails_clearly_without_a_gateway():
    url = f"http://127.0.0.1:{free_port()}"
    result = run_smoke("--base-url", url, "--timeout", "1", timeout=60)
    assert result.returncode == 1
    assert "FAIL" in result.stderr and "cannot connect" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


BINARY = {"task": "brain-stroke", "version": 3, "labels": ["Normal", "Stroke"]}
BINARY["positive_label"] = "Stroke"
GOOD = {
    "model": "brain-stroke",
    "version": 3,
    "label": "Stroke",
    "probabilities": {"Normal": 0.45, "Stroke": 0.55},
    "positive": True,
}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"model": "brain-tumor"}, "names model"),
        ({"version": 0}, "not a positive integer"),
        ({"label": "Tumour"}, "is not one of"),
        ({"probabilities": {"Normal": 0.5, "Stroke": 0.6}}, "sum to"),
        ({"probabilities": {"Normal": 1.0}}, "do not cover exactly"),
        ({"positive": False}, "disagrees with label"),
        ({"positive": None}, "boolean 'positive'"),
    ],
)
def test_smoke_rejects_a_malformed_answer(change, complaint):
    check_prediction(BINARY, GOOD)  # the unchanged answer passes
    with pytest.raises(SmokeError, match=complaint):
        check_prediction(BINARY, {**GOOD, **change})


def test_synthetic_image_is_a_png():
    from PIL import Image

    data = synthetic_png(64)
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.size == (64, 64)
