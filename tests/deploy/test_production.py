"""The production overlay's extras: the TLS Ingress, pull secrets, and the in-flight HPA sample.

The Ingress must publish the gateway's public routes (and not /metrics or the probes), carry a
body limit above the largest upload the gateway accepts and a timeout above its longest request.
docs/samples/ holds the optional scaling-on-in-flight-requests setup: schema-valid, and consistent
with the gateway's metric and thread count.
"""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from gateway import config as gateway_config
from gateway.app import create_app
from gateway.observability import metrics
from tests.deploy.manifests import (
    KUBERNETES_VERSION,
    config_map,
    memory_bytes,
    of_kind,
    one,
    render,
)
from tests.fixtures.common import REPO

SAMPLES = REPO / "docs" / "samples"
PRIVATE_ROUTES = ("/metrics", "/healthz", "/readyz")


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return render("overlays/production")


def app_rules() -> list[str]:
    settings = gateway_config.Settings.from_env({"CT_MODELS": "brain-stroke"})
    return [r.rule for r in create_app(settings).url_map.iter_rules()]


def published(paths: list[dict], rule: str) -> bool:
    """Whether an Ingress path list routes a Flask rule (its literal prefix) to the backend."""
    literal = rule.split("<", 1)[0]
    for path in paths:
        if path["pathType"] == "Exact" and rule == path["path"]:
            return True
        prefix = path["path"].rstrip("/")
        if path["pathType"] == "Prefix" and (literal == prefix or literal.startswith(prefix + "/")):
            return True
    return False


def test_ingress_terminates_tls_for_its_hosts_with_cert_manager(objects):
    ingress = one(objects, "Ingress", "gateway")
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    (tls,) = ingress["spec"]["tls"]
    assert tls["hosts"] == hosts and tls["secretName"]
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]


def test_ingress_routes_the_public_api_to_the_gateway_service_only(objects):
    ingress = one(objects, "Ingress", "gateway")
    service = one(objects, "Service", "gateway")
    (rule,) = ingress["spec"]["rules"]
    paths = rule["http"]["paths"]
    for path in paths:
        backend = path["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    rules = app_rules()
    for route in rules:
        public = not route.startswith(PRIVATE_ROUTES)
        assert published(paths, route) == public, f"{route}: published={not public}?"


def test_ingress_limits_fit_the_gateways_largest_and_longest_request(
    objects, monkeypatch, tmp_path
):
    annotations = one(objects, "Ingress", "gateway")["metadata"]["annotations"]
    env = config_map(objects)
    settings = gateway_config.Settings.from_env(env)
    body = memory_bytes(
        annotations["nginx.ingress.kubernetes.io/proxy-body-size"].replace("m", "Mi")
    )
    # Multipart framing on top of the largest accepted upload.
    assert body >= max(settings.max_series_bytes, settings.max_request_bytes) * 1.05
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    graceful = runpy.run_path(str(REPO / "gateway" / "gunicorn.conf.py"))["graceful_timeout"]
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{key}"]) > graceful, key


def test_production_pods_name_the_ghcr_pull_secret(objects):
    for deployment in of_kind(objects, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod.get("imagePullSecrets") == [{"name": "ghcr-pull"}], deployment["metadata"][
            "name"
        ]


def test_in_flight_hpa_sample_is_valid_and_bounded_by_the_threads(objects):
    hpa = yaml.safe_load((SAMPLES / "hpa-gateway-in-flight.yaml").read_text())
    kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)
    base = one(objects, "HorizontalPodAutoscaler", "gateway")["spec"]
    assert hpa["spec"]["scaleTargetRef"] == base["scaleTargetRef"]
    assert hpa["spec"]["metrics"][0] == base["metrics"][0], "keeps the CPU metric"
    (pods,) = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods["metric"]["name"] == metrics.IN_FLIGHT._name
    settings = gateway_config.Settings.from_env(config_map(objects))
    threads = settings.workers * settings.threads
    assert 0 < float(pods["target"]["averageValue"]) < threads


def test_prometheus_adapter_sample_exposes_that_metric():
    values = yaml.safe_load((SAMPLES / "prometheus-adapter-values.yaml").read_text())
    (rule,) = values["rules"]["custom"]
    name = metrics.IN_FLIGHT._name
    assert rule["seriesQuery"].startswith(name + "{") and rule["name"]["as"] == name
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


def test_in_flight_hpa_sample_patches_the_production_overlay(tmp_path):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH")
    overlay = os.path.relpath(REPO / "kube-config" / "overlays" / "production", tmp_path)
    shutil.copy(SAMPLES / "hpa-gateway-in-flight.yaml", tmp_path / "hpa.yaml")
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {overlay}\npatches:\n  - path: hpa.yaml\n"
    )
    out = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    patched = [d for d in yaml.safe_load_all(out.stdout) if d]
    spec = one(patched, "HorizontalPodAutoscaler", "gateway")["spec"]
    assert [m["type"] for m in spec["metrics"]] == ["Resource", "Pods"]
    # The base's scaling behaviour survives the patch.
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60
