"""The DICOM node in the kind overlay: a configuration that works without a PACS, the smoke's
calling AE allowed, the base's routing, kind's pod network as the PACS network, a spool claim
kind's default storage class binds, and kind-smoke port-forwarding the Service's ports."""

from __future__ import annotations

import ipaddress
import re
import tomllib

import yaml

from ct_dicom_node import config
from ct_local.smoke.dicom import NODE_AE, SMOKE_CALLING_AE
from tests.deploy.manifests import KIND_MK, one, render
from tests.fixtures.common import REPO

KIND_POD_SUBNET = "10.244.0.0/16"  # kind's default networking.podSubnet


def settings(objects) -> config.NodeConfig:
    raw = one(objects, "ConfigMap", "dicom-node-config")["data"]["node.toml"]
    return config.from_dict(tomllib.loads(raw))


def base_objects() -> list[dict]:
    return render("base")


def test_the_kind_configuration_allows_the_smoke_and_routes_like_the_base(kind_objects):
    kind, base = settings(kind_objects), settings(base_objects())
    assert kind.ae_title == base.ae_title == NODE_AE
    assert SMOKE_CALLING_AE in kind.allowed_calling_aets
    assert kind.rules == base.rules
    assert (kind.port, kind.http_port, kind.spool_dir) == (
        base.port,
        base.http_port,
        base.spool_dir,
    )
    assert kind.gateway_url == base.gateway_url
    assert kind.max_series_bytes == base.max_series_bytes
    assert kind.quiet_s <= base.quiet_s
    # No PACS on kind: results go to the pod's loopback, refused at once (never a hanging connect).
    assert ipaddress.ip_address(kind.destination.host).is_loopback


def test_kinds_pod_network_is_the_pacs_network():
    cluster = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    assert cluster.get("networking", {}).get("podSubnet", KIND_POD_SUBNET) == KIND_POD_SUBNET


def test_the_node_policies_use_kinds_pod_network(kind_objects):
    (rule,) = one(kind_objects, "NetworkPolicy", "dicom-node-ingress")["spec"]["ingress"]
    assert [p["ipBlock"]["cidr"] for p in rule["from"]] == [KIND_POD_SUBNET]
    egress = one(kind_objects, "NetworkPolicy", "dicom-node-egress")["spec"]["egress"]
    blocks = [p["ipBlock"]["cidr"] for r in egress for p in r["to"] if "ipBlock" in p]
    assert blocks == [KIND_POD_SUBNET]


def test_the_spool_claim_binds_on_kinds_default_storage_class(kind_objects):
    claim = one(kind_objects, "PersistentVolumeClaim", "dicom-node-spool")["spec"]
    # kind's default class (`standard`, local-path) serves ReadWriteOnce: no class named here.
    assert "storageClassName" not in claim
    assert claim["accessModes"] == ["ReadWriteOnce"]


def test_kind_smoke_forwards_the_node_ports_and_checks_the_node(kind_objects):
    mk = KIND_MK.read_text()
    ports = {
        p["name"]: p["port"] for p in one(kind_objects, "Service", "dicom-node")["spec"]["ports"]
    }
    forward = re.search(
        r"port-forward svc/dicom-node\s*\\?\s*\$\((\w+)\):(\d+) \$\((\w+)\):(\d+)", mk
    )
    assert forward, "kind-smoke must port-forward svc/dicom-node's DICOM and HTTP ports"
    assert (int(forward[2]), int(forward[4])) == (ports["dicom"], ports["http"])
    assert f"--dicom-node 127.0.0.1:$({forward[1]})" in mk
    assert f"--dicom-node-http http://127.0.0.1:$({forward[3]})" in mk
    assert "rollout status deploy/dicom-node" in mk and "deploy/dicom-node\n" in mk
