"""Gateway settings from the environment: the one place their defaults live.

Every setting is an environment variable CT_*; `Settings.from_env` validates all of them at
start-up and raises ConfigError naming the variable, so a bad value never reaches a request.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from ct_contract.preprocess import DEFAULT_MAX_PIXELS

DEFAULT_PORT = 9696
# Read by prometheus_client when it is imported: must be set before that (see gunicorn.conf.py).
PROMETHEUS_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LB_POLICIES = ("round_robin", "pick_first")
_TASK_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
T = TypeVar("T")


class ConfigError(ValueError):
    """A CT_* environment variable is missing or invalid."""


@dataclass(frozen=True)
class Settings:
    models: tuple[str, ...]
    default_task: str
    port: int = DEFAULT_PORT
    model_server: str = "localhost:8500"  # gRPC target; in Kubernetes a dns:/// headless name
    grpc_deadline_s: float = 5.0
    grpc_lb_policy: str = "round_robin"
    max_request_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    # One series request (all slices, or a zip's inflated content): a 300-slice 512x512 16-bit CT
    # is about 160 MB. Size the pod's memory limit with it (kube-config/base/gateway.yaml).
    max_series_bytes: int = 192 * 1024 * 1024
    max_series_slices: int = 512  # slices of one series (multi-frame DICOM frames count each)
    # Images per Predict: TF Serving's max_batch_size (model-server/batching.config; a test checks).
    max_batch_size: int = 16
    metadata_ttl_s: float = 30.0
    request_timeout_s: float = 30.0  # the longest a request (headers read) may take to arrive: 408
    url_allow_private: bool = False
    url_timeout_s: float = 5.0
    url_max_redirects: int = 3
    log_level: str = "INFO"
    workers: int = 2
    threads: int = 4
    # Share of requests sent to the `canary` version label (gateway/canary.py). None (unset): no
    # label routing at all, the model server's newest version answers, as before labels existed.
    canary_share: float | None = None
    # File of hex SHA-256 digests of the accepted bearer tokens (gateway/auth.py); "": auth off.
    auth_tokens_file: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        models = _parse_models(env.get("CT_MODELS", ""))
        default_task = env.get("CT_DEFAULT_TASK", "").strip() or models[0]
        if default_task not in models:
            raise ConfigError(f"CT_DEFAULT_TASK={default_task!r} is not one of CT_MODELS {models}")
        values = {
            field: _get(env, var, parse, cls.__dataclass_fields__[field].default, valid, hint)
            for field, (var, parse, valid, hint) in _FIELDS.items()
        }
        return cls(models=models, default_task=default_task, **values)


def _parse_models(raw: str) -> tuple[str, ...]:
    models = tuple(name.strip() for name in raw.split(",") if name.strip())
    if not models:
        raise ConfigError(
            "CT_MODELS is required: comma-separated model names, e.g. brain-stroke,brain-tumor"
        )
    for name in models:
        if not _TASK_NAME.match(name):
            raise ConfigError(f"CT_MODELS: {name!r} is not a valid model name ([a-z0-9._-])")
    if len(set(models)) != len(models):
        raise ConfigError(f"CT_MODELS lists a model twice: {raw!r}")
    return models


def _get(
    env: Mapping[str, str],
    name: str,
    parse: Callable[[str], T],
    default: T,
    valid: Callable[[T], bool],
    hint: str,
) -> T:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = parse(raw.strip())
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is invalid ({exc}); expected {hint}") from None
    if not valid(value):
        raise ConfigError(f"{name}={raw!r} is invalid; expected {hint}")
    return value


def _parse_bool(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError("not a boolean")


_LEVELS = logging.getLevelNamesMapping()


def _token_file(raw: str) -> str:
    """The path, once the file reads and parses (TokenFileError is a ValueError)."""
    from gateway.auth import TokenFile

    TokenFile(raw)
    return raw


# dataclass field -> (environment variable, parser, validity check); defaults are on the dataclass.
_FIELDS: dict[str, tuple[str, Callable[[str], object], Callable[[object], bool], str]] = {
    "port": ("CT_PORT", int, lambda v: 1 <= v <= 65535, "a port 1..65535"),
    "model_server": ("CT_MODEL_SERVER", str, bool, "a gRPC target such as host:8500"),
    "grpc_deadline_s": ("CT_GRPC_DEADLINE_S", float, lambda v: 0 < v <= 600, "seconds in (0, 600]"),
    "grpc_lb_policy": ("CT_GRPC_LB_POLICY", str, LB_POLICIES.__contains__, f"one of {LB_POLICIES}"),
    "max_request_bytes": ("CT_MAX_REQUEST_BYTES", int, lambda v: v > 0, "bytes > 0"),
    "max_image_pixels": ("CT_MAX_IMAGE_PIXELS", int, lambda v: v > 0, "pixels > 0"),
    "max_series_bytes": ("CT_MAX_SERIES_BYTES", int, lambda v: v > 0, "bytes > 0"),
    "max_series_slices": ("CT_MAX_SERIES_SLICES", int, lambda v: 1 <= v <= 10_000, "1..10000"),
    "max_batch_size": ("CT_MAX_BATCH_SIZE", int, lambda v: 1 <= v <= 1024, "1..1024"),
    "request_timeout_s": (
        "CT_REQUEST_TIMEOUT_S",
        float,
        lambda v: 0 < v <= 3600,
        "seconds in (0, 3600]",
    ),
    "metadata_ttl_s": ("CT_METADATA_TTL_S", float, lambda v: v >= 0, "seconds >= 0"),
    "url_allow_private": ("CT_URL_ALLOW_PRIVATE", _parse_bool, lambda v: True, "true or false"),
    "url_timeout_s": ("CT_URL_TIMEOUT_S", float, lambda v: 0 < v <= 600, "seconds in (0, 600]"),
    "url_max_redirects": ("CT_URL_MAX_REDIRECTS", int, lambda v: 0 <= v <= 20, "0..20"),
    "log_level": (
        "CT_LOG_LEVEL",
        str.upper,
        lambda v: isinstance(_LEVELS.get(v), int),
        "DEBUG, INFO, WARNING, ERROR or CRITICAL",
    ),
    "workers": ("CT_WORKERS", int, lambda v: 1 <= v <= 64, "1..64"),
    "threads": ("CT_THREADS", int, lambda v: 1 <= v <= 256, "1..256"),
    "canary_share": ("CT_CANARY_SHARE", float, lambda v: 0.0 <= v <= 1.0, "a share in [0, 1]"),
    "auth_tokens_file": (
        "CT_AUTH_TOKENS_FILE",
        _token_file,
        bool,
        "a readable file of hex SHA-256 token hashes, one per line",
    ),
}
