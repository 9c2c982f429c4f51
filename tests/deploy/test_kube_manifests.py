"""Kubernetes manifests: rendered with kustomize, schema-validated, and checked against the code.

Every fact the YAML repeats (ports, model names, routes, image names, the gRPC target) is compared
with its one source: gateway/config.py, model-server/ct_standin/config.py, models.config, the
gateway's Flask url_map, mk/kind.mk. Static: no cluster is needed, only `kubectl kustomize`.
"""

from __future__ import annotations

import re

import kubernetes_validate
import pytest
from kubernetes_validate import utils as kubernetes_validate_utils

from ct_standin.config import GRPC_PORT, REST_PORT
from gateway import config as gateway_config
from gateway.app import create_app
from tests.deploy.manifests import (
    CUSTOM_RESOURCE_GROUPS,
    KUBERNETES_VERSION,
    NAMESPACE,
    SINGLETONS,
    config_map,
    container,
    container_port,
    matches,
    model_names,
    of_kind,
    one,
)

# --- schema ---------------------------------------------------------------------------------


def test_every_object_is_valid_for_the_pinned_kubernetes_version(objects):
    assert KUBERNETES_VERSION in {v for v in kubernetes_validate_utils.all_versions()}, (
        f"kubernetes-validate ships no schemas for {KUBERNETES_VERSION}"
    )
    for obj in objects:
        if obj["apiVersion"].split("/")[0] in CUSTOM_RESOURCE_GROUPS:
            continue  # no schema here: test_monitoring.py checks them
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            name = f"{obj['kind']}/{obj['metadata']['name']}"
            pytest.fail(f"{name}: {err.message} at {list(err.path)}")


def test_everything_lives_in_the_namespace(objects):
    assert [o["metadata"]["name"] for o in of_kind(objects, "Namespace")] == [NAMESPACE]
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


# --- selectors ------------------------------------------------------------------------------


def test_services_and_pdbs_select_exactly_one_deployment(objects):
    templates = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in of_kind(objects, "Deployment")
    }
    for d in of_kind(objects, "Deployment"):
        assert matches(d["spec"]["selector"]["matchLabels"], templates[d["metadata"]["name"]])
    selectors = [(s, s["spec"]["selector"]) for s in of_kind(objects, "Service")]
    selectors += [
        (p, p["spec"]["selector"]["matchLabels"]) for p in of_kind(objects, "PodDisruptionBudget")
    ]
    for obj, selector in selectors:
        chosen = [name for name, labels in templates.items() if matches(selector, labels)]
        assert chosen == [obj["metadata"]["name"]], (
            f"{obj['kind']}/{obj['metadata']['name']} selects {chosen}"
        )


def test_service_target_ports_are_container_ports(objects):
    for svc in of_kind(objects, "Service"):
        c = container(objects, svc["metadata"]["name"])
        for port in svc["spec"]["ports"]:
            container_port(c, port.get("targetPort", port["port"]))


def test_hpas_scale_existing_deployments_by_cpu(objects):
    deployments = {
        d["metadata"]["name"]: d
        for d in of_kind(objects, "Deployment")
        if d["metadata"]["name"] not in SINGLETONS
    }
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    assert sorted(h["spec"]["scaleTargetRef"]["name"] for h in hpas) == sorted(deployments)
    for hpa in hpas:
        spec, name = hpa["spec"], hpa["metadata"]["name"]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert spec["scaleTargetRef"]["kind"] == "Deployment"
        assert spec["scaleTargetRef"]["apiVersion"] == "apps/v1"
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"], name
        (metric,) = spec["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert 0 < metric["resource"]["target"]["averageUtilization"] <= 100
        assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60, name
        # A replicas field would reset the HPA's count on every `kubectl apply`.
        assert "replicas" not in deployments[spec["scaleTargetRef"]["name"]]["spec"], name


# --- ports, targets and config agree with the code ------------------------------------------


def test_gateway_ports_match_its_settings(objects):
    c = container(objects, "gateway")
    port = gateway_config.Settings.__dataclass_fields__["port"].default
    assert port == gateway_config.DEFAULT_PORT
    assert container_port(c, "http") == port
    assert int(config_map(objects)["CT_PORT"]) == port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container_port(c, c[probe]["httpGet"]["port"]) == port, probe
    (svc_port,) = one(objects, "Service", "gateway")["spec"]["ports"]
    assert container_port(c, svc_port["targetPort"]) == port
    (policy,) = [
        p for p in of_kind(objects, "NetworkPolicy") if p["metadata"]["name"] == "gateway-ingress"
    ]
    assert [container_port(c, p["port"]) for p in policy["spec"]["ingress"][0]["ports"]] == [port]


def test_tf_serving_ports_match_the_model_server(objects):
    c = container(objects, "tf-serving")
    assert container_port(c, "grpc") == GRPC_PORT
    assert container_port(c, "http") == REST_PORT
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container_port(c, c[probe]["httpGet"]["port"]) == REST_PORT, probe
    svc = one(objects, "Service", "tf-serving")
    # Headless: clients connect to pod IPs directly, so the Service port must be the pod's port.
    assert svc["spec"]["clusterIP"] == "None"
    by_name = {p["name"]: p for p in svc["spec"]["ports"]}
    assert by_name["grpc"]["port"] == container_port(c, by_name["grpc"]["targetPort"])
    assert by_name["grpc"]["port"] == GRPC_PORT


def test_gateway_reaches_tf_serving_through_the_headless_service_by_dns(objects):
    env = config_map(objects)
    svc = one(objects, "Service", "tf-serving")
    grpc_port = {p["name"]: p["port"] for p in svc["spec"]["ports"]}["grpc"]
    name = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local"
    assert env["CT_MODEL_SERVER"] == f"dns:///{name}:{grpc_port}"
    assert env["CT_GRPC_LB_POLICY"] == "round_robin"


def test_gateway_config_is_valid_for_the_gateway(objects):
    env = config_map(objects)
    known = set(gateway_config.environment())
    assert set(env) <= known, f"unknown settings (typos?): {sorted(set(env) - known)}"
    settings = gateway_config.Settings.from_env(env)  # raises ConfigError on any bad value
    assert list(settings.models) == model_names(), "CT_MODELS differs from models.config"
    c = container(objects, "gateway")
    assert [e["configMapRef"]["name"] for e in c["envFrom"]] == [
        cm["metadata"]["name"]
        for cm in of_kind(objects, "ConfigMap")
        if cm["metadata"]["name"].startswith("gateway")
    ]


def test_gateway_probes_are_routes_of_the_app(objects):
    settings = gateway_config.Settings.from_env(config_map(objects))
    adapter = create_app(settings).url_map.bind("localhost")
    c = container(objects, "gateway")
    paths = {c[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")}
    # a TF Serving outage must not take every gateway pod out of its Service (see gateway.yaml)
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for path in paths:
        endpoint, _ = adapter.match(path, method="GET")  # raises NotFound for a wrong path
        assert endpoint, path


def test_tf_serving_probes_ask_for_a_served_model(objects):
    c = container(objects, "tf-serving")
    pattern = re.compile(r"^/v1/models/(?P<name>[^/]+)(?P<rest>/metadata)?$")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        match = pattern.match(c[probe]["httpGet"]["path"])
        assert match and match["name"] in model_names(), (probe, c[probe]["httpGet"]["path"])
    # Metadata needs a loaded servable, so readiness fails while no version is AVAILABLE.
    assert c["readinessProbe"]["httpGet"]["path"].endswith("/metadata")
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "too short for loading"


def test_only_gateway_pods_reach_tf_serving_grpc(objects):
    policies = of_kind(objects, "NetworkPolicy")
    gateway_labels = one(objects, "Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    tfs_labels = one(objects, "Deployment", "tf-serving")["spec"]["template"]["metadata"]["labels"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert (
        deny and "ingress" not in deny[0]["spec"] and deny[0]["spec"]["policyTypes"] == ["Ingress"]
    )
    tfs_rules = [
        rule
        for p in policies
        if matches(p["spec"]["podSelector"].get("matchLabels", {}), tfs_labels)
        for rule in p["spec"].get("ingress", [])
    ]
    assert tfs_rules, "no NetworkPolicy opens TF Serving to the gateway"
    grpc_rules = [r for r in tfs_rules if [p["port"] for p in r["ports"]] != [REST_PORT]]
    assert grpc_rules, "no NetworkPolicy opens TF Serving to the gateway"
    for rule in tfs_rules:
        assert rule.get("from"), "a rule without `from` opens TF Serving to every pod"
    # Besides the gateway's gRPC rule, only the REST port (metrics) may be opened, to a scraper
    # (kube-config/components/monitoring; tests/deploy/test_monitoring.py).
    for rule in grpc_rules:
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, peer
            assert matches(peer["podSelector"]["matchLabels"], gateway_labels)
            assert not matches(peer["podSelector"]["matchLabels"], tfs_labels)
        assert [p["port"] for p in rule["ports"]] in ([GRPC_PORT], ["grpc"])
