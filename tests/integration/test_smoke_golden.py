"""`ct-triage smoke` against the committed models: the right versions, the golden probabilities.

The golden files (model-server/models/<task>/<version>/smoke_golden.json, `python -m
training.golden`) hold each version's answer on the smoke's own inputs through the gateway's
preprocessing; a tampered golden or a wrong expected version must fail the smoke.
"""

from __future__ import annotations

import json

import pytest

from ct_local.paths import MODELS_ROOT
from ct_local.smoke.checks import INSTANCE_HEADER, check_health
from ct_local.smoke.client import SmokeError, request
from ct_local.smoke.golden import GOLDEN_FILE, Golden, load_golden, newest_versions
from ct_local.smoke.inputs import smoke_inputs
from tests.fixtures.common import REPO
from tests.fixtures.gateway import running_gateway
from tests.fixtures.smoke import run_smoke
from tests.fixtures.standin import committed_models_config, serving

MODELS = MODELS_ROOT


class GatewayURL(str):
    """The gateway's base URL, also carrying the model server's gRPC target."""

    model_server: str


TASKS = sorted(p.name for p in MODELS.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def committed_stack(tmp_path_factory):
    """The stand-in serving model-server/models.config (the committed models) and a gateway."""
    with serving(committed_models_config(tmp_path_factory.mktemp("committed"))) as server:
        try:
            with running_gateway(server.target, CT_MODELS=",".join(TASKS)) as gateway:
                url = GatewayURL(gateway.url)
                url.model_server = server.target
                yield url
        except RuntimeError as err:
            pytest.fail(str(err), pytrace=False)


def test_every_served_version_has_a_golden():
    for task, version in newest_versions(MODELS).items():
        golden = json.loads((MODELS / task / str(version) / GOLDEN_FILE).read_text())
        assert (golden["task"], golden["version"]) == (task, version)
        image, files = smoke_inputs()
        assert set(golden["series"]) == {name for name, _ in files}


@pytest.mark.integration
def test_smoke_passes_with_the_committed_models_and_goldens(committed_stack):
    result = run_smoke("--base-url", committed_stack, "--timeout", "60")
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "golden answers within 0.0001" in result.stdout
    newest = newest_versions(MODELS)
    for task in TASKS:
        assert f"ok   {task}: v{newest[task]} " in result.stdout


@pytest.mark.integration
def test_a_wrong_expected_version_fails_the_smoke(committed_stack):
    older = min(int(v.name) for v in (MODELS / "brain-stroke").iterdir() if v.name.isdigit())
    args = ("--base-url", committed_stack, "--timeout", "30")
    result = run_smoke(*args, "--expect-version", f"brain-stroke={older}")
    assert result.returncode == 1
    assert f"expected {older}" in result.stderr, result.stderr


@pytest.mark.integration
def test_a_tampered_golden_fails_the_smoke(committed_stack, tmp_path):
    expect = []
    for task, version in newest_versions(MODELS).items():
        golden = json.loads((MODELS / task / str(version) / GOLDEN_FILE).read_text())
        if task == "brain-stroke":
            first = next(iter(golden["predict"]))
            golden["predict"][first] += 5e-4  # a small drift: beyond the 1e-4 tolerance
        (tmp_path / task / str(version)).mkdir(parents=True)
        (tmp_path / task / str(version) / GOLDEN_FILE).write_text(json.dumps(golden))
        expect += ["--expect-version", f"{task}={version}"]
    args = ("--base-url", committed_stack, "--timeout", "30", "--models-dir", str(tmp_path))
    result = run_smoke(*args, *expect)
    assert result.returncode == 1
    assert "brain-stroke predict: probabilities" in result.stderr, result.stderr
    assert "differ from the golden" in result.stderr


def test_golden_tolerance_and_missing_answers():
    golden = Golden(
        {"t": 2}, {"t": {"predict": {"a": 0.25, "b": 0.75}, "series": {}}}, tolerance=1e-4
    )
    golden.check_version("t", 2)
    golden.check_probabilities("t", "predict", {"a": 0.25005, "b": 0.74995})
    with pytest.raises(SmokeError, match="expected 2"):
        golden.check_version("t", 3)
    with pytest.raises(SmokeError, match="differ from the golden"):
        golden.check_probabilities("t", "predict", {"a": 0.2502, "b": 0.7498})
    with pytest.raises(SmokeError, match="no answer for"):
        golden.check_probabilities("t", "slice (1).png", {"a": 0.5, "b": 0.5})
    with pytest.raises(SmokeError, match="no readable golden"):
        load_golden(REPO / "nowhere", {"t": 1}, ["t"], 1e-4)


@pytest.mark.integration
def test_the_smoke_checks_which_gateway_answers(committed_stack):
    reply = request(f"{committed_stack}/readyz")
    instance = reply.headers[INSTANCE_HEADER.lower()]
    check_health(committed_stack, 10, {instance, "gateway-abc"})  # one of the pods
    with pytest.raises(SmokeError, match="not one of the namespace's gateway pods"):
        check_health(committed_stack, 10, {"gateway-7d9f-xyz"})


@pytest.mark.integration
def test_the_smoke_sends_its_token_to_a_gateway_with_auth_on(committed_stack, tmp_path):
    import hashlib

    token = "smoke-token"
    tokens = tmp_path / "tokens"
    tokens.write_text(hashlib.sha256(token.encode()).hexdigest() + "\n")
    env = {"CT_MODELS": ",".join(TASKS), "CT_AUTH_TOKENS_FILE": str(tokens)}
    with running_gateway(committed_stack.model_server, **env) as gateway:
        args = ("--base-url", gateway.url, "--timeout", "30")
        refused = run_smoke(*args)
        assert refused.returncode == 1 and "HTTP 401" in refused.stderr, refused.stderr
        result = run_smoke(*args, "--token", token)
        assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
