"""The node's image and manifest agree with its code: the ConfigMap is a valid configuration,
ports and the spool mount match it, the NetworkPolicies let it reach the gateway."""

from __future__ import annotations

import tomllib

import pytest

from ct_dicom_node import config
from tests.deploy.dockerfiles import args_of, entrypoint
from tests.deploy.manifests import container, container_port, matches, of_kind, one, render
from tests.fixtures.common import REPO

DOCKERFILE = REPO / "dicom-node" / "Dockerfile"


@pytest.fixture(scope="module")
def objects():
    return render("base")


def node_settings(objects) -> config.NodeConfig:
    raw = one(objects, "ConfigMap", "dicom-node-config")["data"]["node.toml"]
    return config.from_dict(tomllib.loads(raw))


def test_the_configmap_is_a_valid_configuration_matching_the_pod(objects):
    settings = node_settings(objects)
    c = container(objects, "dicom-node")
    assert container_port(c, "dicom") == settings.port
    assert container_port(c, "http") == settings.http_port
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {
        v["name"]: v
        for v in one(objects, "Deployment", "dicom-node")["spec"]["template"]["spec"]["volumes"]
    }
    assert "persistentVolumeClaim" in volumes[mounts[str(settings.spool_dir)]]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env[config.CONFIG_ENV].startswith(next(p for p, n in mounts.items() if n == "config"))


def test_the_gateway_url_is_the_gateway_service(objects):
    settings = node_settings(objects)
    service = one(objects, "Service", "gateway")
    (port,) = service["spec"]["ports"]
    host = f"gateway.{service['metadata']['namespace']}.svc.cluster.local"
    assert settings.gateway_url == f"http://{host}:{port['port']}"
    assert settings.max_series_bytes <= int(
        next(
            cm
            for cm in of_kind(objects, "ConfigMap")
            if cm["metadata"]["name"].startswith("gateway")
        )["data"]["CT_MAX_SERIES_BYTES"]
    )


def test_network_policies_let_the_node_reach_the_gateway(objects):
    node_labels = one(objects, "Deployment", "dicom-node")["spec"]["template"]["metadata"]["labels"]
    gateway = one(objects, "Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    gateway_port = container_port(container(objects, "gateway"), "http")
    egress = one(objects, "NetworkPolicy", "dicom-node-egress")["spec"]
    assert matches(egress["podSelector"]["matchLabels"], node_labels)
    assert any(
        any(matches(p.get("podSelector", {}).get("matchLabels", {}), gateway) for p in rule["to"])
        and gateway_port in [x["port"] for x in rule["ports"]]
        for rule in egress["egress"]
    )
    ingress = one(objects, "NetworkPolicy", "gateway-ingress")["spec"]["ingress"]
    assert any(
        "from" not in rule
        or any(
            matches(p.get("podSelector", {}).get("matchLabels", {}), node_labels)
            for p in rule["from"]
        )
        for rule in ingress
        if gateway_port in [x["port"] for x in rule["ports"]]
    )


def test_dicom_ingress_is_only_from_the_pacs_network(objects):
    (rule,) = one(objects, "NetworkPolicy", "dicom-node-ingress")["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [node_settings(objects).port]
    assert all(set(peer) == {"ipBlock"} for peer in rule["from"])


def test_the_image_is_pinned_non_root_and_installs_the_node_lock():
    (base,) = args_of(DOCKERFILE, "FROM")
    assert base.startswith("python:3.11.") and "slim" in base
    assert args_of(DOCKERFILE, "USER") == ["${UID}:${UID}"]
    assert "--require-hashes --no-deps" in " ".join(args_of(DOCKERFILE, "RUN"))
    assert "requirements.lock /app/requirements.lock" in args_of(DOCKERFILE, "COPY")
    assert entrypoint(DOCKERFILE) == ["python", "-m", "ct_dicom_node"]
    example = config.load(REPO / "dicom-node" / "node.example.toml")
    assert args_of(DOCKERFILE, "EXPOSE") == [f"{example.port} {example.http_port}"]
