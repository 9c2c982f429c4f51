"""Pods drain before they die: preStop sleeps and grace periods against what they wait for.

TF Serving: tensorflow_model_server runs as PID 1 with no SIGTERM handler, so SIGTERM does nothing
and SIGKILL ends it at terminationGracePeriodSeconds. Every gateway must have stopped using a pod
before then; the sum is written out in kube-config/base/tf-serving.yaml and recomputed here from
the gRPC arguments in model-server/Dockerfile. Gateway: the preStop sleep plus gunicorn's
graceful_timeout (gateway/gunicorn.conf.py) must fit in its grace period.
"""

from __future__ import annotations

import math
import runpy

import pytest

from tests.deploy.dockerfiles import MODEL_SERVER, flags
from tests.deploy.manifests import config_map, one
from tests.fixtures.common import REPO

# gRPC core's defaults, which gateway/tfs/client.py does not override (a test below checks):
# one DNS resolution per 30 s at most, and max_connection_age jittered by up to +10 %.
DNS_MIN_TIME_BETWEEN_RESOLUTIONS_S = 30.0
MAX_CONNECTION_AGE_JITTER = 0.10
# CoreDNS's kubernetes plugin answers with a 5 s TTL by default: how long a deleted pod's address
# may still be handed out for the headless Service.
CLUSTER_DNS_TTL_S = 5.0
# After preStop, kubelet sends SIGTERM and waits out the rest of the grace period; TF Serving
# ignores SIGTERM, so this is only slack for the kubelet.
MARGIN_S = 5


def grpc_channel_arguments() -> dict[str, str]:
    raw = flags(MODEL_SERVER / "Dockerfile")["grpc_channel_arguments"]
    return dict(arg.split("=", 1) for arg in raw.split(","))


def pod_spec(objects: list[dict], name: str) -> dict:
    return one(objects, "Deployment", name)["spec"]["template"]["spec"]


def pre_stop_sleep_s(pod: dict) -> int:
    (c,) = pod["containers"]
    hook = c["lifecycle"]["preStop"]
    # The kubelet-side sleep action: no binary in the image, no shell, no PATH to depend on.
    assert set(hook) == {"sleep"}, f"{c['name']}: preStop should be a sleep action, got {hook}"
    return hook["sleep"]["seconds"]


def tf_serving_drain_s() -> float:
    args = grpc_channel_arguments()
    age_s = int(args["grpc.max_connection_age_ms"]) / 1000 * (1 + MAX_CONNECTION_AGE_JITTER)
    grace_s = int(args["grpc.max_connection_age_grace_ms"]) / 1000
    return CLUSTER_DNS_TTL_S + age_s + grace_s + DNS_MIN_TIME_BETWEEN_RESOLUTIONS_S


def test_tf_serving_sleeps_until_every_client_has_re_resolved(objects):
    pod = pod_spec(objects, "tf-serving")
    sleep = pre_stop_sleep_s(pod)
    needed = tf_serving_drain_s()
    assert needed == pytest.approx(78.0), (
        "update the arithmetic in kube-config/base/tf-serving.yaml"
    )
    assert sleep >= math.ceil(needed), f"preStop sleep {sleep} s < {needed} s of draining"
    assert pod["terminationGracePeriodSeconds"] >= sleep + MARGIN_S
    # Not absurdly long either: a rollout or drain waits this long per pod.
    assert pod["terminationGracePeriodSeconds"] <= 2 * needed


def test_tf_serving_connection_age_is_what_the_drain_assumes():
    args = grpc_channel_arguments()
    age_s = int(args["grpc.max_connection_age_ms"]) / 1000
    # If connections lived shorter than the resolver's minimum interval, re-connections would
    # come back to the same addresses, and new HPA pods would still wait up to 30 s.
    assert age_s >= DNS_MIN_TIME_BETWEEN_RESOLUTIONS_S


def test_the_gateway_keeps_grpc_cores_resolution_and_age_defaults():
    source = (REPO / "gateway" / "tfs" / "client.py").read_text()
    for arg in ("grpc.dns_min_time_between_resolutions_ms", "grpc.max_connection_age"):
        assert arg not in source, f"gateway sets {arg}: recompute the TF Serving drain"


def test_gateway_sleeps_then_finishes_requests_in_flight(objects, monkeypatch, tmp_path):
    env = config_map(objects)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    graceful = runpy.run_path(str(REPO / "gateway" / "gunicorn.conf.py"))["graceful_timeout"]
    pod = pod_spec(objects, "gateway")
    sleep = pre_stop_sleep_s(pod)
    assert pod["terminationGracePeriodSeconds"] >= sleep + graceful + 2
