"""Canary versions: TF Serving version labels (stable, canary) in the stand-in and the gateway.

Unit tests for the router (the share, with a seeded RNG), the header and the label cache; the
stand-in's label rules; and a real stand-in + gateway with two tiny versions showing the share,
the header, and that removing the canary label from models.config drains it without a restart.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from ct_local.smoke.inputs import multipart, synthetic_png
from ct_local.standin import start_model_server
from ct_standin.config import ModelConfig, VersionPolicy
from ct_standin.errors import ServingError
from ct_standin.registry import Registry
from gateway.config import ConfigError, Settings
from gateway.errors import BadGatewayError, ServiceUnavailableError
from gateway.models.canary import LabelResolver, Router, parse_header
from tests.fixtures.common import TINY_MODELS, export_tiny_model
from tests.fixtures.gateway import running_gateway

# ----------------------------------------------------------------------------- router, header


@pytest.mark.parametrize("share", [0.05, 0.2, 0.5, 0.9])
def test_router_sends_the_configured_share_to_the_canary(share):
    router = Router(share, random.Random(1234))
    n = 1000
    hits = sum(router.wants_canary() for _ in range(n))
    sigma = (n * share * (1 - share)) ** 0.5
    assert abs(hits - n * share) <= 4 * sigma, (hits, share)


def test_router_edges_and_forcing():
    assert not any(Router(0.0).wants_canary() for _ in range(200))
    assert all(Router(1.0).wants_canary() for _ in range(200))
    assert Router(0.0).wants_canary(forced=True) is True
    assert Router(1.0).wants_canary(forced=False) is False
    with pytest.raises(ValueError):
        Router(1.5)


@pytest.mark.parametrize(
    ("value", "forced"),
    [(None, None), ("1", True), ("true", True), (" Yes ", True), ("0", False), ("off", False)]
    + [("maybe", None), ("", None)],
)
def test_header_values(value, forced):
    assert parse_header(value) is forced


def test_canary_share_setting():
    base = {"CT_MODELS": "brain-stroke"}
    assert Settings.from_env(base).canary_share is None  # unset: no label routing
    assert Settings.from_env({**base, "CT_CANARY_SHARE": "0"}).canary_share == 0.0
    assert Settings.from_env({**base, "CT_CANARY_SHARE": "0.25"}).canary_share == 0.25
    for bad in ("1.5", "-0.1", "ten"):
        with pytest.raises(ConfigError, match="CT_CANARY_SHARE"):
            Settings.from_env({**base, "CT_CANARY_SHARE": bad})


def test_label_resolver_caches_and_treats_unknown_labels_as_absent():
    calls = []
    now = [0.0]
    table = {"stable": 1, "canary": 2}

    def lookup(task, label):
        calls.append(label)
        if label not in table:
            raise BadGatewayError("Unrecognized servable version label", code="model_rejected")
        return table[label]

    resolver = LabelResolver(lookup, ttl_s=10, clock=lambda: now[0])
    assert resolver.route("t", canary=True) == (2, "canary")
    assert resolver.route("t", canary=False) == (1, "stable")
    assert len(calls) == 2  # cached
    del table["canary"]
    assert resolver.route("t", canary=True) == (2, "canary")  # still cached
    now[0] = 11
    assert resolver.route("t", canary=True) == (1, "stable")  # drained after the TTL
    table.clear()
    now[0] = 22
    assert resolver.route("t", canary=True) == (None, None)  # no labels: as before


def test_label_resolver_does_not_mistake_an_outage_for_no_labels():
    def lookup(task, label):
        raise ServiceUnavailableError("down", code="model_server_unavailable")

    with pytest.raises(ServiceUnavailableError):
        LabelResolver(lookup, ttl_s=10).versions("t")


# ----------------------------------------------------------------------------- stand-in labels


def _registry(tmp_path: Path, labels: dict[str, int], config: Path | None = None) -> Registry:
    root = tmp_path / "m"
    for version in (1, 2, 3):
        (root / str(version)).mkdir(parents=True, exist_ok=True)
        (root / str(version) / "saved_model.pb").write_bytes(b"")
    policy = VersionPolicy("specific", versions=frozenset({1, 2}))
    model = ModelConfig("m", root, policy, labels, source=config)
    return Registry([model], lambda name, version, path: f"servable {version}")


def _code(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(ServingError) as caught:
        call(*args, **kwargs)
    return caught.value.code, caught.value.message


def test_standin_labels_resolve_and_unknown_labels_are_tf_servings_error(tmp_path):
    registry = _registry(tmp_path, {"stable": 1, "canary": 2})
    registry.sync()
    assert registry.resolve("m", label="stable")[0] == 1
    assert registry.resolve("m", label="canary")[0] == 2
    assert _code(registry.resolve, "m", label="beta") == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: beta",
    )


def _config_text(root: Path, versions, labels: dict[str, int]) -> str:
    policy = " ".join(f"versions: {v}" for v in versions)
    label_text = "".join(f" version_labels {{ key: '{k}' value: {v} }}" for k, v in labels.items())
    return (
        f'model_config_list {{ config {{ name: "m" base_path: "{root}" '
        f'model_platform: "tensorflow" model_version_policy {{ specific {{ {policy} }} }}'
        f"{label_text} }} }}\n"
    )


def _rewrite(config: Path, text: str) -> None:
    before = config.stat().st_mtime_ns
    config.write_text(text)
    deadline = time.monotonic() + 30
    while config.stat().st_mtime_ns == before:  # coarse clocks: poll until the change is visible
        assert time.monotonic() < deadline, f"{config}'s mtime never changed"
        time.sleep(0.01)
        config.write_text(text)


def test_standin_reloads_labels_and_refuses_moving_one_to_an_unavailable_version(tmp_path):
    config = tmp_path / "models.config"
    root = tmp_path / "m"
    config.write_text("")
    registry = _registry(tmp_path, {"stable": 1, "canary": 2}, config)
    registry.sync()
    _rewrite(config, _config_text(root, [1, 2], {"stable": 1}))  # canary removed
    registry.sync()
    assert _code(registry.resolve, "m", label="canary")[0] == grpc.StatusCode.INVALID_ARGUMENT
    # Moving `stable` to version 3 in the same change that loads it: refused, old config kept.
    _rewrite(config, _config_text(root, [1, 2, 3], {"stable": 3}))
    registry.sync()
    assert registry.resolve("m", label="stable")[0] == 1
    assert registry.available_versions() == {"m": [1, 2]}


# ----------------------------------------------------------------------------- end to end


TASK, LABELS, SIZE, THRESHOLD, POSITIVE = TINY_MODELS[0]


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("canary-models")
    export_tiny_model(root, TASK, LABELS, SIZE, THRESHOLD, POSITIVE, version=1, seed=0)
    export_tiny_model(root, TASK, LABELS, SIZE, THRESHOLD, POSITIVE, version=2, seed=1)
    return root


def _stack_config(root: Path, labels: dict[str, int]) -> str:
    label_text = "".join(
        f"    version_labels {{ key: '{k}' value: {v} }}\n" for k, v in labels.items()
    )
    return (
        "model_config_list {\n  config {\n"
        f'    name: "{TASK}"\n    base_path: "{root / TASK}"\n    model_platform: "tensorflow"\n'
        "    model_version_policy { specific { versions: 1 versions: 2 } }\n"
        f"{label_text}  }}\n}}\n"
    )


def _predict(base: str, canary: str | None = None) -> dict:
    data, content_type = multipart("image", "x.png", synthetic_png(), "image/png")
    request = urllib.request.Request(
        f"{base}/v1/models/{TASK}:predict", data, {"Content-Type": content_type}
    )
    if canary is not None:
        request.add_header("X-CT-Canary", canary)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _steady(check, hold_s: float, timeout: float = 30.0) -> None:
    """Poll until `check` has passed without a break for `hold_s`.

    Each gateway worker caches the labels for CT_METADATA_TTL_S, so one worker can answer from the
    new labels while another still serves the old ones: one passing answer proves nothing about
    the next. Holding the condition for longer than the TTL covers every worker's cache.
    """
    deadline = time.monotonic() + timeout
    passing_since = None
    while True:
        try:
            check()
        except AssertionError:
            passing_since = None
            if time.monotonic() > deadline:
                raise
        else:
            passing_since = passing_since or time.monotonic()
            if time.monotonic() - passing_since >= hold_s:
                return
        time.sleep(0.05)  # poll interval, not synchronisation


TTL_S = 0.3


@pytest.mark.integration
def test_canary_share_header_and_drain_end_to_end(two_versions, tmp_path):
    config = tmp_path / "models.config"
    # TF Serving refuses labels naming versions that are not loaded yet (unless started with
    # --allow_version_labels_for_unavailable_models): start without, label once AVAILABLE.
    config.write_text(_stack_config(two_versions, {}))
    server = start_model_server(config, poll_seconds=0.2)
    try:
        env = {"CT_MODELS": TASK, "CT_CANARY_SHARE": "0.5", "CT_METADATA_TTL_S": str(TTL_S)}
        with running_gateway(server.target, **env) as gateway:
            base = gateway.url
            # No labels: as before, the newest version answers and no route is named.
            for _ in range(5):
                body = _predict(base)
                assert body["version"] == 2 and "route" not in body
            _rewrite(config, _stack_config(two_versions, {"stable": 1, "canary": 2}))

            def labelled():
                assert (_predict(base, "0")["version"], _predict(base, "1")["version"]) == (1, 2)

            _steady(labelled, hold_s=3 * TTL_S)
            forced = _predict(base, "1")
            assert (forced["version"], forced["route"]) == (2, "canary")
            assert _predict(base, "0")["route"] == "stable"
            seen = [_predict(base) for _ in range(40)]
            routes = {(b["version"], b["route"]) for b in seen}
            assert routes == {(1, "stable"), (2, "canary")}  # both, at share 0.5
            with urllib.request.urlopen(f"{base}/v1/models/{TASK}", timeout=10) as response:
                described = json.loads(response.read())
            assert described["version_labels"] == {"stable": 1, "canary": 2}
            with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
                text = response.read().decode()
            wanted = ('route="canary"', f'task="{TASK}"', 'version="2"')
            assert any(
                line.startswith("ct_gateway_predictions_total{") and all(w in line for w in wanted)
                for line in text.splitlines()
            ), text

            # Drain: the canary label leaves models.config; no restart of anything.
            _rewrite(config, _stack_config(two_versions, {"stable": 1}))

            def drained():
                body = _predict(base, "1")
                assert (body["version"], body["route"]) == (1, "stable")

            _steady(drained, hold_s=3 * TTL_S)
            assert {_predict(base)["version"] for _ in range(20)} == {1}
    finally:
        server.stop()
