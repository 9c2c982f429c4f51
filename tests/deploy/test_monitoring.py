"""The monitoring component (kube-config/components/monitoring) agrees with Services and code.

ServiceMonitor and PrometheusRule are Prometheus Operator CRDs, which kubernetes-validate has no
schemas for: their structure is checked here (apiVersion, kind, required fields), and every fact
they repeat (Service labels, port names, metrics paths, metric and route names) is compared with
its source. The NetworkPolicies of the component are schema-validated by test_kube_manifests.
"""

from __future__ import annotations

import re

import pytest
import yaml

from ct_standin.rest import METRICS_PATH
from gateway import config as gateway_config
from gateway.app import create_app
from gateway.observability import metrics
from tests.deploy.dockerfiles import MODEL_SERVER, text_proto_values
from tests.deploy.manifests import (
    NAMESPACE,
    container_port,
    matches,
    of_kind,
    one,
    render,
)
from tests.fixtures.common import REPO

COMPONENT = REPO / "kube-config" / "components" / "monitoring"
GROUP = "monitoring.coreos.com/v1"
DURATION = re.compile(r"^(\d+(ms|s|m|h))+$")
SEVERITIES = {"critical", "warning", "info"}


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return render("overlays/production")


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", duration))


def exported_metric_names() -> set[str]:
    names = set()
    for metric in vars(metrics).values():
        kind, name = getattr(metric, "_type", None), getattr(metric, "_name", None)
        if kind == "counter":
            names.add(f"{name}_total")
        elif kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "gauge":
            names.add(name)
    return names


def app_rules() -> set[str]:
    settings = gateway_config.Settings.from_env({"CT_MODELS": "brain-stroke"})
    return {rule.rule for rule in create_app(settings).url_map.iter_rules()}


def test_the_component_is_a_kustomize_component_used_by_production():
    kustomization = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Component"
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    for resource in kustomization["resources"]:
        assert (COMPONENT / resource).is_file(), resource
    production = yaml.safe_load(
        (REPO / "kube-config/overlays/production/kustomization.yaml").read_text()
    )
    assert "../../components/monitoring" in production.get("components", [])


def test_service_monitors_select_one_service_by_a_named_port(objects):
    monitors = of_kind(objects, "ServiceMonitor")
    assert sorted(m["metadata"]["name"] for m in monitors) == ["gateway", "tf-serving"]
    for monitor in monitors:
        name = monitor["metadata"]["name"]
        assert monitor["apiVersion"] == GROUP and monitor["metadata"]["namespace"] == NAMESPACE
        selector = monitor["spec"]["selector"]["matchLabels"]
        services = [
            s for s in of_kind(objects, "Service") if matches(selector, s["metadata"]["labels"])
        ]
        assert [s["metadata"]["name"] for s in services] == [name], f"{name} selects {services}"
        assert "namespaceSelector" not in monitor["spec"], "same namespace as the Service"
        (service,) = services
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert monitor["spec"]["endpoints"], name
        for endpoint in monitor["spec"]["endpoints"]:
            assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}, endpoint
            assert endpoint["port"] in ports, f"{name}: Service has no port {endpoint['port']!r}"
            assert endpoint["path"].startswith("/")
            assert DURATION.match(endpoint["interval"]) and DURATION.match(
                endpoint["scrapeTimeout"]
            )
            assert seconds(endpoint["scrapeTimeout"]) <= seconds(endpoint["interval"])


def scrape_port(objects: list[dict], name: str) -> tuple[int, str]:
    (endpoint,) = one(objects, "ServiceMonitor", name)["spec"]["endpoints"]
    service_port = {p["name"]: p for p in one(objects, "Service", name)["spec"]["ports"]}[
        endpoint["port"]
    ]
    (c,) = one(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    return container_port(c, service_port["targetPort"]), endpoint["path"]


def test_paths_are_where_the_servers_publish_metrics(objects):
    port, path = scrape_port(objects, "gateway")
    assert port == gateway_config.DEFAULT_PORT
    assert path == "/metrics" and path in app_rules()
    port, path = scrape_port(objects, "tf-serving")
    assert port == 8501
    assert path == METRICS_PATH
    assert f'"{path}"' == text_proto_values(MODEL_SERVER / "monitoring.config")["path"]


def test_network_policies_admit_the_scraper_to_each_scraped_port(objects):
    for name in ("gateway", "tf-serving"):
        port, _ = scrape_port(objects, name)
        labels = one(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        policy = one(objects, "NetworkPolicy", f"prometheus-scrape-{name}")
        assert matches(policy["spec"]["podSelector"]["matchLabels"], labels)
        (rule,) = policy["spec"]["ingress"]
        (peer,) = rule["from"]
        assert set(peer) == {"namespaceSelector"}, "scrapers come from the monitoring namespace"
        assert "kubernetes.io/metadata.name" in peer["namespaceSelector"]["matchLabels"]
        assert [p["port"] for p in rule["ports"]] == [port]


def test_prometheus_rule_structure(objects):
    (rule,) = of_kind(objects, "PrometheusRule")
    assert rule["apiVersion"] == GROUP and rule["metadata"]["namespace"] == NAMESPACE
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"], group
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names)), "duplicate alert names"
    for alert in alerts:
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}, alert
        assert alert["expr"].strip() and DURATION.match(alert["for"]), alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES
        assert alert["annotations"]["summary"]
        assert alert["expr"].count("(") == alert["expr"].count(")"), alert["alert"]


def test_alerts_cover_errors_latency_and_readiness(objects):
    (rule,) = of_kind(objects, "PrometheusRule")
    exprs = " ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    assert 'ct_gateway_requests_total{job="gateway", status=~"5.."}' in exprs
    assert (
        "histogram_quantile(0.95" in exprs and "ct_gateway_request_duration_seconds_bucket" in exprs
    )
    assert "kube_deployment_status_replicas_available" in exprs and "up{" in exprs


def test_alerts_use_only_names_the_gateway_and_the_cluster_define(objects):
    (rule,) = of_kind(objects, "PrometheusRule")
    exported = exported_metric_names()
    assert "ct_gateway_requests_in_flight" in exported
    services = {m["metadata"]["name"] for m in of_kind(objects, "ServiceMonitor")}
    deployments = {d["metadata"]["name"] for d in of_kind(objects, "Deployment")}
    rules = app_rules()
    for alert in (r for g in rule["spec"]["groups"] for r in g["rules"]):
        expr = alert["expr"]
        for name in re.findall(r"\bct_gateway_\w+", expr):
            assert name in exported, f"{alert['alert']}: observability/metrics.py lacks {name}"
        for value in re.findall(r'namespace="([^"]+)"', expr):
            assert value == NAMESPACE
        for pattern in re.findall(r'job=~?"([^"]+)"', expr):
            assert set(pattern.split("|")) <= services, pattern
        for pattern in re.findall(r'deployment=~?"([^"]+)"', expr):
            assert set(pattern.split("|")) <= deployments, pattern
        for pattern in re.findall(r'route=~?"([^"]+)"', expr):
            assert set(pattern.split("|")) <= rules, f"{pattern}: not a Flask rule of the app"
