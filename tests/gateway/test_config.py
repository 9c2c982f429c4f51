"""gateway/config.py: defaults, parsing, and a clear error for every invalid value."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from ct_contract.preprocess import DEFAULT_MAX_PIXELS
from gateway.config import ConfigError, Settings
from tests.fixtures.common import PYTHON, REPO


def test_defaults() -> None:
    s = Settings.from_env({"CT_MODELS": "brain-stroke, brain-tumor"})
    assert s.models == ("brain-stroke", "brain-tumor")
    assert s.default_task == "brain-stroke"
    assert (s.port, s.model_server, s.grpc_lb_policy) == (9696, "localhost:8500", "round_robin")
    assert (s.grpc_deadline_s, s.metadata_ttl_s, s.url_timeout_s) == (5.0, 30.0, 5.0)
    assert s.max_request_bytes == 10 * 1024 * 1024
    assert s.max_image_pixels == DEFAULT_MAX_PIXELS
    assert (s.url_allow_private, s.url_max_redirects, s.log_level) == (False, 3, "INFO")
    assert (s.workers, s.threads) == (2, 4)


def test_every_setting_has_an_environment_variable() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)} - {"models", "default_task"}
    assert {f.name for f in dataclasses.fields(Settings) if "env" in f.metadata} == fields


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "CT_MODELS": "a,b",
            "CT_DEFAULT_TASK": "b",
            "CT_PORT": "8080",
            "CT_MODEL_SERVER": "dns:///tf-serving.ct-triage.svc.cluster.local:8500",
            "CT_GRPC_DEADLINE_S": "2.5",
            "CT_GRPC_LB_POLICY": "pick_first",
            "CT_URL_ALLOW_PRIVATE": "TRUE",
            "CT_LOG_LEVEL": "debug",
            "CT_WORKERS": "3",
        }
    )
    assert (s.default_task, s.port, s.grpc_deadline_s, s.grpc_lb_policy) == (
        "b",
        8080,
        2.5,
        "pick_first",
    )
    assert s.model_server.startswith("dns:///")
    assert (s.url_allow_private, s.log_level, s.workers) == (True, "DEBUG", 3)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, "CT_MODELS"),
        ({"CT_MODELS": " , "}, "CT_MODELS"),
        ({"CT_MODELS": "a,a"}, "CT_MODELS"),
        ({"CT_MODELS": "Bad Name"}, "CT_MODELS"),
        ({"CT_DEFAULT_TASK": "zzz"}, "CT_DEFAULT_TASK"),
        ({"CT_PORT": "http"}, "CT_PORT"),
        ({"CT_PORT": "70000"}, "CT_PORT"),
        ({"CT_GRPC_DEADLINE_S": "0"}, "CT_GRPC_DEADLINE_S"),
        ({"CT_GRPC_DEADLINE_S": "nan"}, "CT_GRPC_DEADLINE_S"),
        ({"CT_GRPC_LB_POLICY": "random"}, "CT_GRPC_LB_POLICY"),
        ({"CT_MAX_REQUEST_BYTES": "-1"}, "CT_MAX_REQUEST_BYTES"),
        ({"CT_MAX_IMAGE_PIXELS": "1e6"}, "CT_MAX_IMAGE_PIXELS"),
        ({"CT_METADATA_TTL_S": "-5"}, "CT_METADATA_TTL_S"),
        ({"CT_URL_ALLOW_PRIVATE": "maybe"}, "CT_URL_ALLOW_PRIVATE"),
        ({"CT_URL_MAX_REDIRECTS": "100"}, "CT_URL_MAX_REDIRECTS"),
        ({"CT_LOG_LEVEL": "loud"}, "CT_LOG_LEVEL"),
        ({"CT_WORKERS": "0"}, "CT_WORKERS"),
        ({"CT_THREADS": "four"}, "CT_THREADS"),
    ],
)
def test_invalid_values_name_the_variable(env: dict, names: str) -> None:
    env = {"CT_MODELS": "brain-stroke", **env} if "CT_MODELS" not in names else env
    with pytest.raises(ConfigError, match=names):
        Settings.from_env(env)


def test_gateway_refuses_to_start_with_a_bad_setting() -> None:
    out = subprocess.run(
        [PYTHON, "-m", "gateway"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "CT_MODELS": "brain-stroke", "CT_PORT": "nope"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "CT_PORT" in out.stderr and "Traceback" not in out.stderr
