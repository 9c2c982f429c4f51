"""The two Dockerfiles and the TF Serving configs they bake in, checked against their sources.

Static checks (no Docker here): pinned base images, non-root numeric users, ports and flags equal
to ct_standin.config and the gateway's settings, and config files that exist and say what the
flags and the manifests assume.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from ct_standin.config import GRPC_PORT, REST_PORT, load_models
from ct_standin.rest import METRICS_PATH
from gateway import config as gateway_config
from tests.deploy.dockerfiles import (
    GATEWAY,
    MODEL_SERVER,
    args_of,
    build_args,
    dockerignore,
    entrypoint,
    flags,
    text_proto_values,
)
from tests.fixtures.common import REPO


def first_party_imports(*packages: Path) -> set[str]:
    """Top-level names the packages import that are folders of this repository."""
    names = set()
    for package in packages:
        for path in package.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return {name for name in names if (REPO / name).is_dir()}


def assert_non_root(dockerfile: Path) -> None:
    (user,) = args_of(dockerfile, "USER")
    values = build_args(dockerfile)
    uid = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], user).split(":")[0]
    assert uid.isdigit() and int(uid) > 0, (
        f"{dockerfile}: USER {user} is not a numeric non-root UID"
    )


def configmap_deadline_s() -> float:
    kustomization = yaml.safe_load((REPO / "kube-config/base/kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    env = dict(lit.split("=", 1) for lit in generator["literals"])
    return float(env["CT_GRPC_DEADLINE_S"])


# --- gateway ---------------------------------------------------------------------------------


def test_gateway_image_is_pinned_python_311_slim():
    (base,) = args_of(GATEWAY / "Dockerfile", "FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base


def test_gateway_image_runs_the_package_as_non_root_on_its_port():
    dockerfile = GATEWAY / "Dockerfile"
    assert_non_root(dockerfile)
    assert args_of(dockerfile, "EXPOSE") == [str(gateway_config.DEFAULT_PORT)]
    assert entrypoint(dockerfile) == ["python", "-m", "gateway"]
    assert (GATEWAY / "__main__.py").is_file()
    copies = args_of(dockerfile, "COPY")
    assert "gateway/requirements.lock /app/requirements.lock" in copies
    # WORKDIR /app: `python -m gateway` imports both packages from there.
    assert "ct_contract/ /app/ct_contract/" in copies
    assert "gateway/ /app/gateway/" in copies
    (install,) = [run for run in args_of(dockerfile, "RUN") if "pip install" in run]
    for option in ("--require-hashes", "--no-deps", "-r /app/requirements.lock"):
        assert option in install, f"the image installs the hashed lock only: {option} missing"


def test_gateway_image_installs_no_tensorflow():
    for name in ("requirements.in", "requirements.lock"):
        requirements = (GATEWAY / name).read_text().lower()
        assert not re.search(r"^\s*(tensorflow|tf-|keras)", requirements, re.M), name


def test_gateway_context_is_the_repository_root_holding_only_what_the_image_copies():
    """docker build -f gateway/Dockerfile . (mk/kind.mk, release.yml): the root .dockerignore
    excludes everything but the COPY sources, and those are every first-party package the
    gateway imports."""
    ignored = dockerignore(REPO)
    assert ignored[0] == "*", "the context must exclude everything (tests, models, .venv) first"
    kept = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    sources = {copy.split()[0].rstrip("/") for copy in args_of(GATEWAY / "Dockerfile", "COPY")}
    assert {source.split("/")[0] for source in sources} == kept
    assert first_party_imports(GATEWAY, REPO / "ct_contract") == {"gateway", "ct_contract"}
    assert "**/__pycache__" in ignored and "gateway/Dockerfile" in ignored
    assert not (GATEWAY / ".dockerignore").exists(), "unused: the context is the repository root"


# --- model server ----------------------------------------------------------------------------


def test_model_server_image_is_pinned_official_tf_serving():
    (base,) = args_of(MODEL_SERVER / "Dockerfile", "FROM")
    assert re.fullmatch(r"tensorflow/serving:\d+\.\d+\.\d+", base), base


def test_model_server_ports_and_flags_match_the_stand_in():
    dockerfile = MODEL_SERVER / "Dockerfile"
    assert_non_root(dockerfile)
    expose = " ".join(args_of(dockerfile, "EXPOSE")).split()
    assert sorted(map(int, expose)) == sorted([GRPC_PORT, REST_PORT])
    assert entrypoint(dockerfile)[0].endswith("tensorflow_model_server")
    f = flags(dockerfile)
    assert int(f["port"]) == GRPC_PORT
    assert int(f["rest_api_port"]) == REST_PORT
    assert f["enable_batching"] == "true"
    # The stand-in takes the same flag names (ct_local/standin.py and the test fixtures).
    assert int(f["file_system_poll_wait_seconds"]) == 0, "models are immutable inside the image"


def test_model_server_bakes_in_every_file_its_flags_name():
    dockerfile = MODEL_SERVER / "Dockerfile"
    f = flags(dockerfile)
    copied = {}
    for copy in args_of(dockerfile, "COPY"):
        *sources, dest = copy.split()
        for source in sources:
            copied[str(Path(dest) / Path(source).name) if dest.endswith("/") else dest] = source
    for flag in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        assert f[flag] in copied, f"--{flag}={f[flag]} is not COPY'd into the image"
        assert (MODEL_SERVER / copied[f[flag]]).is_file(), copied[f[flag]]
    assert "models/ /models/" in args_of(dockerfile, "COPY")
    for model in load_models(MODEL_SERVER / "models.config"):
        assert Path(model.base_path).parent == Path("/models"), model.base_path
    ignored = dockerignore(MODEL_SERVER)
    assert ignored[0] == "*", "the context must exclude everything (ct_standin, caches) by default"
    assert "!ct_standin" not in ignored and "!models/" in ignored


def test_connections_age_out_but_in_flight_requests_finish():
    f = flags(MODEL_SERVER / "Dockerfile")
    args = dict(a.split("=", 1) for a in f["grpc_channel_arguments"].split(","))
    age_ms = int(args["grpc.max_connection_age_ms"])
    grace_ms = int(args["grpc.max_connection_age_grace_ms"])
    assert 5_000 <= age_ms <= 300_000, "new HPA pods should get traffic within minutes"
    assert grace_ms >= configmap_deadline_s() * 1000, "grace must outlast the gateway's deadline"


def test_monitoring_config_serves_prometheus_where_the_stand_in_does():
    values = text_proto_values(MODEL_SERVER / "monitoring.config")
    assert values["enable"] == "true"
    assert values["path"] == f'"{METRICS_PATH}"'


def test_batching_config_is_sane_for_small_models():
    values = {k: int(v) for k, v in text_proto_values(MODEL_SERVER / "batching.config").items()}
    expected = {
        "max_batch_size",
        "batch_timeout_micros",
        "num_batch_threads",
        "max_enqueued_batches",
    }
    assert set(values) == expected
    # TF Serving rejects warmup (and real) batches larger than max_batch_size.
    assert values["max_batch_size"] >= max(warmup_batch_sizes())
    assert values["batch_timeout_micros"] < configmap_deadline_s() * 1e6 / 100
    assert values["num_batch_threads"] >= 1 and values["max_enqueued_batches"] >= 1


def warmup_batch_sizes() -> tuple[int, ...]:
    """training/export/savedmodel.py's WARMUP_BATCH_SIZES, read without importing TensorFlow."""
    tree = ast.parse((REPO / "training" / "export" / "savedmodel.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "WARMUP_BATCH_SIZES" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("training/export/savedmodel.py defines no WARMUP_BATCH_SIZES")
