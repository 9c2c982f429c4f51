"""The per-request decoding budget is one fact: the gateway container's memory limit. Kubernetes
hands it to the gateway (CT_MEMORY_LIMIT_BYTES from `limits.memory`), the gateway derives each
request's budget from it, and the gateway's default (local runs) is the base manifest's limit."""

from __future__ import annotations

import yaml

from gateway.config import MIN_DECODE_BUDGET, Settings
from tests.deploy.manifests import config_map, container, memory_bytes
from tests.fixtures.common import REPO

VARIABLE = "CT_MEMORY_LIMIT_BYTES"


def base_gateway_limit() -> int:
    docs = yaml.safe_load_all((REPO / "kube-config/base/gateway.yaml").read_text())
    (deployment,) = [d for d in docs if d and d["kind"] == "Deployment"]
    (gateway,) = deployment["spec"]["template"]["spec"]["containers"]
    return int(memory_bytes(gateway["resources"]["limits"]["memory"]))


def test_gateway_default_is_the_base_manifests_limit():
    assert Settings.__dataclass_fields__["memory_limit_bytes"].default == base_gateway_limit()


def test_every_overlay_passes_the_containers_own_limit(objects):
    gateway = container(objects, "gateway")
    (entry,) = [e for e in gateway.get("env", []) if e["name"] == VARIABLE]
    field = entry["valueFrom"]["resourceFieldRef"]
    assert field["resource"] == "limits.memory"
    assert field.get("containerName", gateway["name"]) == gateway["name"]
    assert field.get("divisor", "1") in ("1", 1), "the gateway reads bytes"
    assert VARIABLE not in config_map(objects), "a second copy of the limit would drift"


def test_every_overlays_limit_leaves_each_request_a_budget(objects):
    gateway = container(objects, "gateway")
    limit = int(memory_bytes(gateway["resources"]["limits"]["memory"]))
    settings = Settings.from_env(config_map(objects) | {VARIABLE: str(limit)})
    assert settings.decode_budget_bytes >= MIN_DECODE_BUDGET
    per_request = limit // (settings.workers * settings.threads)
    assert settings.decode_budget_bytes <= per_request


def test_the_default_budget_is_the_documented_96_mib():
    settings = Settings.from_env({"CT_MODELS": "brain-stroke"})
    assert settings.decode_budget_bytes == 96 * 1024 * 1024
