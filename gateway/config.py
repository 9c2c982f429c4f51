"""Gateway settings from the environment: the one place their names, defaults and checks live.

Every setting is an environment variable CT_*, declared once on its Settings field (`_env(...)`:
default, variable, parser, check). `Settings.from_env` validates all of them at start-up and raises
ConfigError naming the variable, so a bad value never reaches a request; `environment()` lists them
(docs/operations.md's configuration table is tested against it).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ct_contract.preprocess import DEFAULT_MAX_PIXELS

DEFAULT_PORT = 9696
# Read by prometheus_client when it is imported: must be set before that (see gunicorn.conf.py).
PROMETHEUS_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LB_POLICIES = ("round_robin", "pick_first")
MODELS_ENV, DEFAULT_TASK_ENV = "CT_MODELS", "CT_DEFAULT_TASK"
REQUIRED = "(required)"  # environment(): CT_MODELS has no default
FIRST_MODEL = "(first of CT_MODELS)"  # environment(): CT_DEFAULT_TASK's default
_TASK_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_LEVELS = logging.getLevelNamesMapping()
# The pod's memory limit (kube-config/base/gateway.yaml; Kubernetes passes it to the gateway as
# CT_MEMORY_LIMIT_BYTES). What a worker holds before any request (the app, measured ~75 MB, with
# gRPC and request bodies on top) is set aside; the rest is shared by the requests a pod runs at
# once (CT_WORKERS x CT_THREADS), each decoding within its share.
DEFAULT_MEMORY_LIMIT = 1024 * 1024 * 1024
WORKER_RESERVE_BYTES = 128 * 1024 * 1024
MIN_DECODE_BUDGET = 16 * 1024 * 1024


class ConfigError(ValueError):
    """A CT_* environment variable is missing or invalid."""


@dataclass(frozen=True)
class EnvVar:
    """How one CT_* variable is read: parser, validity check, and the hint an error gives."""

    name: str
    parse: Callable[[str], Any]
    valid: Callable[[Any], bool]
    hint: str


def _env(default: Any, name: str, parse: Callable, valid: Callable, hint: str) -> Any:
    return field(default=default, metadata={"env": EnvVar(name, parse, valid, hint)})


def _parse_bool(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError("not a boolean")


def _token_file(raw: str) -> str:
    """The path, once the file reads and parses (TokenFileError is a ValueError)."""
    from gateway.auth import TokenFile

    TokenFile(raw)
    return raw


def _seconds(top: float) -> tuple[Callable, Callable, str]:
    return float, lambda v: 0 < v <= top, f"seconds in (0, {top:g}]"


@dataclass(frozen=True)
class Settings:
    models: tuple[str, ...]  # CT_MODELS (required)
    default_task: str  # CT_DEFAULT_TASK (default: the first of CT_MODELS)
    port: int = _env(DEFAULT_PORT, "CT_PORT", int, lambda v: 1 <= v <= 65535, "a port 1..65535")
    # gRPC target; in Kubernetes a dns:/// headless name
    model_server: str = _env(
        "localhost:8500", "CT_MODEL_SERVER", str, bool, "a gRPC target such as host:8500"
    )
    grpc_deadline_s: float = _env(5.0, "CT_GRPC_DEADLINE_S", *_seconds(600))
    grpc_lb_policy: str = _env(
        "round_robin", "CT_GRPC_LB_POLICY", str, LB_POLICIES.__contains__, f"one of {LB_POLICIES}"
    )
    max_request_bytes: int = _env(
        10 * 1024 * 1024, "CT_MAX_REQUEST_BYTES", int, lambda v: v > 0, "bytes > 0"
    )
    max_image_pixels: int = _env(
        DEFAULT_MAX_PIXELS, "CT_MAX_IMAGE_PIXELS", int, lambda v: v > 0, "pixels > 0"
    )
    # One series request (all slices, or a zip's inflated content): a 300-slice 512x512 16-bit CT
    # is about 160 MB. Size the pod's memory limit with it (kube-config/base/gateway.yaml).
    max_series_bytes: int = _env(
        192 * 1024 * 1024, "CT_MAX_SERIES_BYTES", int, lambda v: v > 0, "bytes > 0"
    )
    # Slices of one series (multi-frame DICOM frames count each).
    max_series_slices: int = _env(
        512, "CT_MAX_SERIES_SLICES", int, lambda v: 1 <= v <= 10_000, "1..10000"
    )
    # Images per Predict: TF Serving's max_batch_size (model-server/batching.config; a test checks).
    max_batch_size: int = _env(16, "CT_MAX_BATCH_SIZE", int, lambda v: 1 <= v <= 1024, "1..1024")
    metadata_ttl_s: float = _env(30.0, "CT_METADATA_TTL_S", float, lambda v: v >= 0, "seconds >= 0")
    # The longest a request (headers read) may take to arrive: 408.
    request_timeout_s: float = _env(30.0, "CT_REQUEST_TIMEOUT_S", *_seconds(3600))
    # The longest a request head may take to arrive (then the connection closes; gateway/server).
    header_timeout_s: float = _env(10.0, "CT_HEADER_TIMEOUT_S", *_seconds(3600))
    url_allow_private: bool = _env(
        False, "CT_URL_ALLOW_PRIVATE", _parse_bool, lambda v: True, "true or false"
    )
    url_timeout_s: float = _env(5.0, "CT_URL_TIMEOUT_S", *_seconds(600))
    url_max_redirects: int = _env(3, "CT_URL_MAX_REDIRECTS", int, lambda v: 0 <= v <= 20, "0..20")
    log_level: str = _env(
        "INFO",
        "CT_LOG_LEVEL",
        str.upper,
        lambda v: isinstance(_LEVELS.get(v), int),
        "DEBUG, INFO, WARNING, ERROR or CRITICAL",
    )
    workers: int = _env(2, "CT_WORKERS", int, lambda v: 1 <= v <= 64, "1..64")
    threads: int = _env(4, "CT_THREADS", int, lambda v: 1 <= v <= 256, "1..256")
    # The pod's (or machine's share's) memory; each request's decoding budget derives from it.
    memory_limit_bytes: int = _env(
        DEFAULT_MEMORY_LIMIT, "CT_MEMORY_LIMIT_BYTES", int, lambda v: v > 0, "bytes > 0"
    )
    # Share of requests sent to the `canary` version label (gateway/models/canary.py). None
    # (unset): no label routing at all, the model server's newest version answers, as before labels
    # existed.
    canary_share: float | None = _env(
        None, "CT_CANARY_SHARE", float, lambda v: 0.0 <= v <= 1.0, "a share in [0, 1]"
    )
    # File of hex SHA-256 digests of the accepted bearer tokens (gateway/auth.py); "": auth off.
    auth_tokens_file: str = _env(
        "",
        "CT_AUTH_TOKENS_FILE",
        _token_file,
        bool,
        "a readable file of hex SHA-256 token hashes, one per line",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        models = _parse_models(env.get(MODELS_ENV, ""))
        default_task = env.get(DEFAULT_TASK_ENV, "").strip() or models[0]
        if default_task not in models:
            raise ConfigError(f"CT_DEFAULT_TASK={default_task!r} is not one of CT_MODELS {models}")
        values = {f.name: _get(env, f.metadata["env"], f.default) for f in _env_fields()}
        settings = cls(models=models, default_task=default_task, **values)
        if settings.decode_budget_bytes < MIN_DECODE_BUDGET:
            raise ConfigError(
                f"CT_MEMORY_LIMIT_BYTES={settings.memory_limit_bytes} leaves "
                f"{settings.decode_budget_bytes} bytes per request with CT_WORKERS="
                f"{settings.workers} and CT_THREADS={settings.threads}; at least "
                f"{MIN_DECODE_BUDGET} are needed"
            )
        return settings

    @property
    def decode_budget_bytes(self) -> int:
        """The memory one request may use for decoding: what the workers leave of the pod's
        limit, shared by the requests a pod runs at once."""
        free = self.memory_limit_bytes - self.workers * WORKER_RESERVE_BYTES
        return max(free, 0) // (self.workers * self.threads)


def _env_fields() -> list:
    return [f for f in fields(Settings) if "env" in f.metadata]


def environment() -> dict[str, Any]:
    """Every CT_* variable Settings reads -> its default (REQUIRED, FIRST_MODEL: see above)."""
    listed = {MODELS_ENV: REQUIRED, DEFAULT_TASK_ENV: FIRST_MODEL}
    return listed | {f.metadata["env"].name: f.default for f in _env_fields()}


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


def _get(env: Mapping[str, str], var: EnvVar, default: Any) -> Any:
    raw = env.get(var.name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = var.parse(raw.strip())
    except ValueError as exc:
        raise ConfigError(f"{var.name}={raw!r} is invalid ({exc}); expected {var.hint}") from None
    if not var.valid(value):
        raise ConfigError(f"{var.name}={raw!r} is invalid; expected {var.hint}")
    return value
