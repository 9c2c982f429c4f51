"""Kubernetes manifests: rendered with kustomize, schema-validated, and checked against the code.

Every fact the YAML repeats (ports, model names, routes, image names, the gRPC target) is compared
with its one source: gateway/config.py, model-server/ct_standin/ports.py, models.config, the
gateway's Flask url_map, mk/kind.mk. Static: no cluster is needed, only `kubectl kustomize`.
"""

from __future__ import annotations

import math
import re
import runpy
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate_utils

from ct_standin import ports
from ct_standin.config import load_models
from gateway import config as gateway_config
from tests.fixtures.common import REPO

# kind v0.29.0 (KIND_VERSION in .github/workflows/ci.yml) runs Kubernetes v1.33 by default.
KUBERNETES_VERSION = "1.33.0"
KUBE = REPO / "kube-config"
OVERLAYS = ("base", "overlays/kind", "overlays/production")
NAMESPACE = "ct-triage"
MODELS_CONFIG = REPO / "model-server" / "models.config"
KIND_MK = REPO / "mk" / "kind.mk"
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
# API groups of CRDs (Prometheus Operator) that kubernetes-validate has no schemas for.
CUSTOM_RESOURCE_GROUPS = ("monitoring.coreos.com",)


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


@pytest.fixture(scope="module", params=OVERLAYS)
def objects(request) -> list[dict]:
    return render(request.param)


@pytest.fixture(scope="module")
def kind_objects() -> list[dict]:
    return render("overlays/kind")


@pytest.fixture(scope="module")
def production_objects() -> list[dict]:
    return render("overlays/production")


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
    """A probe's or Service's port, named or numeric, as the container's port number."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
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


# --- schema ---------------------------------------------------------------------------------


def test_every_object_is_valid_for_the_pinned_kubernetes_version(objects):
    assert KUBERNETES_VERSION in {v for v in kubernetes_validate_utils.all_versions()}, (
        f"kubernetes-validate ships no schemas for {KUBERNETES_VERSION}"
    )
    for obj in objects:
        if obj["apiVersion"].split("/")[0] in CUSTOM_RESOURCE_GROUPS:
            continue  # no schema here: test_deploy_monitoring.py checks them
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
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
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
    assert container_port(c, "grpc") == ports.GRPC_PORT
    assert container_port(c, "http") == ports.REST_PORT
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container_port(c, c[probe]["httpGet"]["port"]) == ports.REST_PORT, probe
    svc = one(objects, "Service", "tf-serving")
    # Headless: clients connect to pod IPs directly, so the Service port must be the pod's port.
    assert svc["spec"]["clusterIP"] == "None"
    by_name = {p["name"]: p for p in svc["spec"]["ports"]}
    assert by_name["grpc"]["port"] == container_port(c, by_name["grpc"]["targetPort"])
    assert by_name["grpc"]["port"] == ports.GRPC_PORT


def test_gateway_reaches_tf_serving_through_the_headless_service_by_dns(objects):
    env = config_map(objects)
    svc = one(objects, "Service", "tf-serving")
    grpc_port = {p["name"]: p["port"] for p in svc["spec"]["ports"]}["grpc"]
    name = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local"
    assert env["CT_MODEL_SERVER"] == f"dns:///{name}:{grpc_port}"
    assert env["CT_GRPC_LB_POLICY"] == "round_robin"


def test_gateway_config_is_valid_for_the_gateway(objects):
    env = config_map(objects)
    known = {var for var, *_ in gateway_config._FIELDS.values()} | {"CT_MODELS", "CT_DEFAULT_TASK"}
    assert set(env) <= known, f"unknown settings (typos?): {sorted(set(env) - known)}"
    settings = gateway_config.Settings.from_env(env)  # raises ConfigError on any bad value
    assert list(settings.models) == model_names(), "CT_MODELS differs from models.config"
    c = container(objects, "gateway")
    assert [e["configMapRef"]["name"] for e in c["envFrom"]] == [
        cm["metadata"]["name"] for cm in of_kind(objects, "ConfigMap")
    ]


def test_gateway_probes_are_routes_of_the_app(objects):
    app_module = pytest.importorskip("gateway.app", reason="gateway/app.py is not importable")
    settings = gateway_config.Settings.from_env(config_map(objects))
    adapter = app_module.create_app(settings).url_map.bind("localhost")
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
    grpc_rules = [r for r in tfs_rules if [p["port"] for p in r["ports"]] != [ports.REST_PORT]]
    assert grpc_rules, "no NetworkPolicy opens TF Serving to the gateway"
    for rule in tfs_rules:
        assert rule.get("from"), "a rule without `from` opens TF Serving to every pod"
    # Besides the gateway's gRPC rule, only the REST port (metrics) may be opened, to a scraper
    # (kube-config/components/monitoring; tests/deploy/test_deploy_monitoring.py).
    for rule in grpc_rules:
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, peer
            assert matches(peer["podSelector"]["matchLabels"], gateway_labels)
            assert not matches(peer["podSelector"]["matchLabels"], tfs_labels)
        assert [p["port"] for p in rule["ports"]] in ([ports.GRPC_PORT], ["grpc"])


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
    images = {make_var("GATEWAY_IMAGE"), make_var("TFS_IMAGE")}
    containers = [container(kind_objects, n) for n in ("gateway", "tf-serving")]
    assert {c["image"] for c in containers} == images
    assert all(c["imagePullPolicy"] in ("IfNotPresent", "Never") for c in containers)
    mk = KIND_MK.read_text()
    assert "build -t $(GATEWAY_IMAGE) gateway" in mk
    assert "build -t $(TFS_IMAGE) model-server" in mk
    assert f"apply -k {make_var('KIND_OVERLAY')}" in mk.replace(
        "$(KIND_OVERLAY)", make_var("KIND_OVERLAY")
    )
    assert make_var("KIND_OVERLAY") == "kube-config/overlays/kind"
    assert make_var("KIND_NAMESPACE") == NAMESPACE


def test_production_pulls_pinned_registry_images(production_objects):
    for name in ("gateway", "tf-serving"):
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
    for job in ("test", "kind-smoke"):
        (python,) = [
            s for s in jobs[job]["steps"] if s.get("uses", "").startswith("actions/setup-python")
        ]
        assert str(python["with"]["python-version"]) == "3.11"
    kind_action = [u for u in uses["kind-smoke"] if u.startswith("helm/kind-action@")]
    assert kind_action and re.fullmatch(r"helm/kind-action@v\d+\.\d+\.\d+", kind_action[0])
    # Image names live in mk/kind.mk only: CI must not name (and so drift from) them.
    text = WORKFLOW.read_text()
    for image in re.findall(r"ct-triage/[\w.-]+:[\w.-]+", text):
        assert image in (make_var("GATEWAY_IMAGE"), make_var("TFS_IMAGE")), image


# --- models --------------------------------------------------------------------------------


def test_every_configured_model_is_committed():
    for model in load_models(MODELS_CONFIG):
        task_dir = REPO / "model-server" / "models" / model.name
        versions = [
            p for p in task_dir.glob("*") if p.name.isdigit() and (p / "saved_model.pb").is_file()
        ]
        assert versions, (
            f"models.config lists {model.name!r} but {task_dir.relative_to(REPO)}/<version>/"
            "saved_model.pb does not exist (export the trained model, see training/export.py)"
        )


def test_models_config_base_paths_are_where_the_image_puts_models():
    for model in load_models(MODELS_CONFIG):
        assert Path(model.base_path) == Path("/models") / model.name, model
