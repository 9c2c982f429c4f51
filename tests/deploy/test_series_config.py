"""The series batch size is one fact: TF Serving's max_batch_size (model-server/batching.config),
the gateway's default CT_MAX_BATCH_SIZE and the cluster's ConfigMap agree."""

from __future__ import annotations

import re

import yaml

from gateway.config import Settings
from tests.deploy.manifests import memory_bytes
from tests.fixtures.common import REPO


def batching_max_batch_size() -> int:
    text = (REPO / "model-server" / "batching.config").read_text()
    match = re.search(r"^max_batch_size\s*\{\s*value:\s*(\d+)\s*\}", text, re.MULTILINE)
    assert match, "batching.config has no max_batch_size"
    return int(match.group(1))


def configmap_env() -> dict[str, str]:
    kustomization = yaml.safe_load((REPO / "kube-config/base/kustomization.yaml").read_text())
    (generator,) = [g for g in kustomization["configMapGenerator"] if "literals" in g]
    return dict(item.split("=", 1) for item in generator["literals"])


def test_gateway_default_batch_is_tf_servings_max_batch_size():
    assert Settings.__dataclass_fields__["max_batch_size"].default == batching_max_batch_size()


def test_cluster_configmap_batch_is_tf_servings_max_batch_size():
    assert int(configmap_env()["CT_MAX_BATCH_SIZE"]) == batching_max_batch_size()


def test_series_settings_are_read_and_checked():
    env = {"CT_MODELS": "brain-stroke", "CT_MAX_SERIES_SLICES": "7", "CT_MAX_BATCH_SIZE": "3"}
    settings = Settings.from_env(env)
    assert (settings.max_series_slices, settings.max_batch_size) == (7, 3)
    for bad in ({"CT_MAX_SERIES_SLICES": "0"}, {"CT_MAX_BATCH_SIZE": "x"}):
        try:
            Settings.from_env({"CT_MODELS": "brain-stroke", **bad})
        except ValueError as exc:
            assert next(iter(bad)) in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")


def test_cluster_series_cap_fits_the_tmp_volume_uploads_are_spooled_to():
    docs = list(yaml.safe_load_all((REPO / "kube-config/base/gateway.yaml").read_text()))
    (deployment,) = [d for d in docs if d and d["kind"] == "Deployment"]
    (tmp,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tmp"]
    cap = int(configmap_env()["CT_MAX_SERIES_BYTES"])
    assert cap < memory_bytes(tmp["emptyDir"]["sizeLimit"])
