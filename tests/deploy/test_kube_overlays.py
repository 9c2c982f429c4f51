"""Kubernetes manifests, continued: hardening and resources, the overlays' images against
mk/kind.mk and CI, and the models the manifests serve (test_kube_manifests.py has the schema,
selectors, ports and settings checks; rendering is in manifests.py).
"""

from __future__ import annotations

import math
import re
import runpy
from pathlib import Path

import yaml

from ct_standin.config import load_models
from tests.deploy.manifests import (
    KIND_MK,
    MODELS_CONFIG,
    NAMESPACE,
    WORKFLOW,
    config_map,
    container,
    cpu_cores,
    make_builds,
    make_var,
    memory_bytes,
    of_kind,
    one,
)
from tests.fixtures.common import REPO

# --- hardening and resources -----------------------------------------------------------------


def test_every_container_is_hardened_and_bounded(objects):
    for dep in of_kind(objects, "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        pod_sc = pod.get("securityContext", {})
        assert pod.get("automountServiceAccountToken") is False, dep["metadata"]["name"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc, where = c.get("securityContext", {}), f"{dep['metadata']['name']}/{c['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 0)) > 0, where
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), where
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{where}: /tmp must be an emptyDir"
            res = c.get("resources", {})
            for kind in ("cpu", "memory"):
                req, lim = res.get("requests", {}).get(kind), res.get("limits", {}).get(kind)
                assert req and lim, f"{where}: {kind} request and limit are required"
                parse = cpu_cores if kind == "cpu" else memory_bytes
                assert parse(req) <= parse(lim), f"{where}: {kind} request above limit"


def test_tensorflow_threads_match_the_cpu_limit(objects):
    c = container(objects, "tf-serving")
    cores = math.ceil(cpu_cores(c["resources"]["limits"]["cpu"]))
    for flag in ("--tensorflow_intra_op_parallelism", "--tensorflow_inter_op_parallelism"):
        assert f"{flag}={cores}" in c["args"], f"{flag} should equal limits.cpu ({cores})"


def test_shutdown_fits_in_the_grace_period(objects, monkeypatch, tmp_path):
    env = config_map(objects)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gunicorn_conf = runpy.run_path(str(REPO / "gateway" / "gunicorn.conf.py"))
    deadline = float(env["CT_GRPC_DEADLINE_S"])
    for name, in_flight in (
        ("gateway", gunicorn_conf["graceful_timeout"]),
        ("tf-serving", deadline),
    ):
        pod = one(objects, "Deployment", name)["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert sleep >= 5, f"{name}: endpoints need a few seconds to drop the pod"
        assert pod["terminationGracePeriodSeconds"] >= sleep + in_flight + 2, name


# --- overlays, images, cluster and CI agree --------------------------------------------------


def test_kind_overlay_uses_the_images_built_by_make(kind_objects):
    images = {make_var("GATEWAY_IMAGE"), make_var("TFS_IMAGE"), make_var("DICOM_NODE_IMAGE")}
    containers = [container(kind_objects, n) for n in ("gateway", "tf-serving", "dicom-node")]
    assert {c["image"] for c in containers} == images
    # Every container of the overlay runs an image make builds (none is pulled by a bare name).
    every = {
        c["image"]
        for d in of_kind(kind_objects, "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert every == images
    assert all(c["imagePullPolicy"] in ("IfNotPresent", "Never") for c in containers)
    mk = KIND_MK.read_text()
    # The gateway imports ct_contract/, so its context is the repository root.
    assert make_builds() == {
        "GATEWAY_IMAGE": ("gateway/Dockerfile", "."),
        "TFS_IMAGE": ("model-server/Dockerfile", "model-server"),
        # The node imports no other package of this repository (dicom-node/Dockerfile).
        "DICOM_NODE_IMAGE": ("dicom-node/Dockerfile", "dicom-node"),
    }
    # ... and `kind load`s every image it builds.
    (load,) = re.findall(r"load docker-image (?:[^\n\\]|\\\n)*", mk)
    assert set(re.findall(r"\$\((\w+_IMAGE)\)", load)) == set(make_builds())
    assert f"apply -k {make_var('KIND_OVERLAY')}" in mk.replace(
        "$(KIND_OVERLAY)", make_var("KIND_OVERLAY")
    )
    assert make_var("KIND_OVERLAY") == "kube-config/overlays/kind"
    assert make_var("KIND_NAMESPACE") == NAMESPACE


def test_production_pulls_pinned_registry_images(production_objects):
    for name in ("gateway", "tf-serving", "dicom-node"):
        image = container(production_objects, name)["image"]
        registry, _, rest = image.partition("/")
        assert "." in registry, f"{image}: production images come from a registry host"
        tag = rest.rpartition(":")[2]
        assert ":" in rest and tag not in ("dev", "latest"), f"{image}: pin a release tag"


def test_kind_cluster_name_and_nodes():
    cluster = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    assert cluster["kind"] == "Cluster"
    assert cluster["name"] == make_var("KIND_CLUSTER")
    roles = sorted(n["role"] for n in cluster["nodes"])
    assert roles == ["control-plane", "worker"]


def test_ci_runs_the_tests_and_the_kind_smoke():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert {"push", "pull_request"} <= set(triggers)
    jobs = workflow["jobs"]
    runs = {job: [s.get("run", "") for s in jobs[job]["steps"]] for job in ("test", "kind-smoke")}
    uses = {job: [s.get("uses", "") for s in jobs[job]["steps"]] for job in jobs}
    assert "make test" in runs["test"]
    assert "make kind-smoke" in runs["kind-smoke"]
    # The environment (dev lock, project editable) comes first: the smoke script imports ct_local.
    for job, target in (("test", "make test"), ("kind-smoke", "make kind-smoke")):
        assert "make venv" in runs[job] and runs[job].index("make venv") < runs[job].index(target)
    for job in ("test", "kind-smoke"):
        (python,) = [
            s for s in jobs[job]["steps"] if s.get("uses", "").startswith("actions/setup-python")
        ]
        assert str(python["with"]["python-version"]) == "3.11"
    kind_action = [u for u in uses["kind-smoke"] if u.startswith("helm/kind-action@")]
    assert kind_action and re.fullmatch(r"helm/kind-action@[0-9a-f]{40}", kind_action[0])
    # Image names live in mk/kind.mk only: CI must not name (and so drift from) them.
    text = WORKFLOW.read_text()
    for image in re.findall(r"ct-triage/[\w.-]+:[\w.-]+", text):
        assert image in (make_var(v) for v in make_builds()), image


# --- models --------------------------------------------------------------------------------


def test_every_configured_model_is_committed():
    for model in load_models(MODELS_CONFIG):
        task_dir = REPO / "model-server" / "models" / model.name
        versions = [
            p for p in task_dir.glob("*") if p.name.isdigit() and (p / "saved_model.pb").is_file()
        ]
        assert versions, (
            f"models.config lists {model.name!r} but {task_dir.relative_to(REPO)}/<version>/"
            "saved_model.pb does not exist (export the trained model, see "
            "training/export/savedmodel.py)"
        )


def test_models_config_base_paths_are_where_the_image_puts_models():
    for model in load_models(MODELS_CONFIG):
        assert Path(model.base_path) == Path("/models") / model.name, model
