"""Shared helpers of the deploy tests: the rendered kustomizations and facts the YAML repeats.

Rendering needs `kubectl kustomize` (the tests skip without kubectl); no cluster is needed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from ct_standin.config import load_models
from tests.fixtures.common import REPO

# kind v0.29.0 (KIND_VERSION in .github/workflows/ci.yml) runs Kubernetes v1.33 by default.
KUBERNETES_VERSION = "1.33.0"
KUBE = REPO / "kube-config"
OVERLAYS = ("base", "overlays/kind", "overlays/production")
NAMESPACE = "ct-triage"
MODELS_CONFIG = REPO / "model-server" / "models.config"
KIND_MK = REPO / "mk" / "kind.mk"
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
# `$(DOCKER) build [-f Dockerfile] -t $(IMAGE) context` in mk/kind.mk.
DOCKER_BUILD = re.compile(
    r"\$\(DOCKER\) build (?:-f (?P<file>\S+) )?-t \$\((?P<image>\w+)\) (?P<context>\S+)\s*$", re.M
)
# API groups of CRDs (Prometheus Operator) that kubernetes-validate has no schemas for.
CUSTOM_RESOURCE_GROUPS = ("monitoring.coreos.com",)
# Deployments that run exactly one pod by design, on a volume (no HPA, no PDB): the DICOM node,
# whose spool must see every instance of a series (kube-config/base/dicom-node.yaml).
SINGLETONS = ("dicom-node",)


def render(overlay: str) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH: it renders the kustomizations (kubectl kustomize)")
    out = subprocess.run(
        ["kubectl", "kustomize", str(KUBE / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def of_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict], kind: str, name: str) -> dict:
    found = [o for o in of_kind(objs, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def config_map(objs: list[dict]) -> dict[str, str]:
    (cm,) = [o for o in of_kind(objs, "ConfigMap") if o["metadata"]["name"].startswith("gateway")]
    return cm["data"]


def container(objs: list[dict], deployment: str) -> dict:
    (c,) = one(objs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return c


def container_port(c: dict, port: int | str) -> int:
    """A probe's or Service's port, named or numeric, as a port number the container declares."""
    declared = c.get("ports", [])
    if isinstance(port, int):
        numbers = [p["containerPort"] for p in declared]
        assert port in numbers, f"port {port} is not a port of container {c['name']}: {numbers}"
        return port
    named = {p["name"]: p["containerPort"] for p in declared if "name" in p}
    assert port in named, f"port {port!r} is not a named port of container {c['name']}"
    return named[port]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def model_names() -> list[str]:
    return [m.name for m in load_models(MODELS_CONFIG)]


def make_var(name: str) -> str:
    match = re.search(rf"^{name}\s*:?=\s*(\S+)\s*$", KIND_MK.read_text(), re.M)
    assert match, f"{name} is not defined in {KIND_MK}"
    return match.group(1)


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def memory_bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity)


def docker_build(dockerfile: str | None, context: str) -> tuple[str, str]:
    """(Dockerfile, context) as repository paths; docker's default is the context's Dockerfile."""
    file = dockerfile or os.path.join(context, "Dockerfile")
    return os.path.normpath(file), os.path.normpath(context)


def make_builds() -> dict[str, tuple[str, str]]:
    """mk/kind.mk's image builds: image variable -> (Dockerfile, context)."""
    return {
        m["image"]: docker_build(m["file"], m["context"])
        for m in DOCKER_BUILD.finditer(KIND_MK.read_text())
    }
