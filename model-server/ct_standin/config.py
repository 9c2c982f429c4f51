"""The model server's ports, and its ModelServerConfig (text protobuf) with the version policies.

No TensorFlow here: the launcher imports this module to render configs before exec'ing a server.
The ports are defined here once: the launcher, the test fixtures and (through the tests) the
Dockerfile and the manifests read them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

log = logging.getLogger(__name__)
GRPC_PORT = 8500
REST_PORT = 8501
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


class ConfigError(ValueError):
    """The model config file is missing, malformed or asks for something unsupported."""


@dataclass(frozen=True)
class VersionPolicy:
    """ModelVersionPolicy: `latest` (newest num_versions), `all`, or `specific` versions."""

    kind: str = "latest"
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    def select(self, available: Iterable[int]) -> set[int]:
        available = set(available)
        if self.kind == "all":
            return available
        if self.kind == "specific":
            return available & self.versions
        return set(sorted(available, reverse=True)[: self.num_versions])


@dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    version_labels: Mapping[str, int] = field(default_factory=dict)
    source: Path | None = None  # the config file it came from (re-read when it changes)


def parse_config_text(
    text: str, source: str = "<config>"
) -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as err:
        raise ConfigError(f"{source}: not a valid ModelServerConfig: {err}") from err
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{source}: only model_config_list is supported")
    return config


def read_config_file(path: Path) -> model_server_config_pb2.ModelServerConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read model config file {path}: {err}") from err
    return parse_config_text(text, str(path))


def _policy(proto: model_server_config_pb2.ModelConfig) -> VersionPolicy:
    policy = proto.model_version_policy
    kind = policy.WhichOneof("policy_choice") or "latest"
    if kind == "specific":
        if not policy.specific.versions:
            raise ConfigError(f"model {proto.name}: specific version policy lists no versions")
        return VersionPolicy("specific", versions=frozenset(policy.specific.versions))
    if kind == "all":
        return VersionPolicy("all")
    # proto3: an unset num_versions reads 0, and TF Serving then serves one version.
    return VersionPolicy("latest", num_versions=max(1, policy.latest.num_versions))


def _model(
    proto: model_server_config_pb2.ModelConfig, folder: Path, source: Path | None = None
) -> ModelConfig:
    if not proto.name or not proto.base_path:
        raise ConfigError(f"every model needs a name and a base_path, got {proto.name!r}")
    if proto.model_platform not in ("", "tensorflow"):
        raise ConfigError(f"model {proto.name}: platform {proto.model_platform!r} unsupported")
    base = Path(proto.base_path)
    return ModelConfig(
        name=proto.name,
        base_path=base if base.is_absolute() else (folder / base).resolve(),
        policy=_policy(proto),
        version_labels=dict(proto.version_labels),
        source=source,
    )


def load_models(path: Path) -> list[ModelConfig]:
    """The models a config file lists; relative base_paths are resolved against its folder."""
    path = Path(path).resolve()
    config = read_config_file(path)
    models = [_model(m, path.parent, path) for m in config.model_config_list.config]
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: duplicate model names in {names}")
    return models


def render_config(path: Path, prefix_map: Mapping[str, Path]) -> str:
    """The config text with every base_path absolute: `prefix_map` maps a path prefix (such as
    the image's "/models") to a local folder, relative paths resolve against the file's folder."""
    path = Path(path).resolve()
    config = read_config_file(path)
    for model in config.model_config_list.config:
        model.base_path = str(_localise(model.base_path, path.parent, prefix_map))
    return text_format.MessageToString(config)


def _localise(base_path: str, folder: Path, prefix_map: Mapping[str, Path]) -> Path:
    for prefix, local in prefix_map.items():
        prefix = prefix.rstrip("/")
        if base_path == prefix or base_path.startswith(prefix + "/"):
            return Path(local).resolve() / base_path[len(prefix) :].lstrip("/")
    base = Path(base_path)
    return base if base.is_absolute() else (folder / base).resolve()


# strings::safe_strto64, which TF Serving's ParseVersionNumber calls, skips C isspace() around
# the digits, takes one optional "-" (no "+") and refuses anything out of int64 range.
_C_SPACE = " \t\n\v\f\r"
_INT64 = (-(2**63), 2**63 - 1)
_warned_duplicates: set[tuple[Path, int, str]] = set()


def parse_version(name: str) -> int | None:
    """The version a child directory's name stands for, as TF Serving reads it, else None.

    "7", "007" and " 7 " are version 7; "-3" is version -3 (TF Serving accepts negative numbers
    and serves them like any other; they are just older than 0); "7a", "+7", "v7", "1e3" and
    "9223372036854775808" are not versions and are ignored.
    """
    text = name.strip(_C_SPACE)
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()):
        return None
    value = int(text)
    return value if _INT64[0] <= value <= _INT64[1] else None


def version_dirs(base_path: Path) -> dict[int, Path]:
    """Version number -> folder for the versions under a model's base path that hold a SavedModel.

    As TF Serving's IndexChildrenByVersion: children are taken in sorted (byte) order and when
    two parse to the same number the later one wins, with a warning ("007" and "7": "7").
    Differences: TF Serving's `all` policy skips that de-duplication (it aspires both paths for
    one version); here every policy uses it. TF Serving also counts plain files and folders
    without saved_model.pb yet; here a folder without one (a copy in progress) is not a version
    until it has one, and files are ignored.
    """
    try:
        children = sorted(Path(base_path).iterdir(), key=lambda child: child.name)
    except OSError:
        return {}
    found: dict[int, Path] = {}
    for child in children:
        version = parse_version(child.name)
        if version is None or not child.is_dir():
            continue
        if version in found:
            _warn_duplicate(Path(base_path), version, found[version].name, child.name)
        found[version] = child
    return {v: p for v, p in found.items() if any((p / n).is_file() for n in SAVED_MODEL_FILES)}


def _warn_duplicate(base: Path, version: int, ignored: str, used: str) -> None:
    if (base, version, used) not in _warned_duplicates:  # once, not on every poll
        _warned_duplicates.add((base, version, used))
        log.warning(
            "Duplicate version directories detected. Version %d will be loaded from %s, "
            "%s will be ignored.",
            version,
            used,
            ignored,
        )


def list_versions(base_path: Path) -> list[int]:
    """Version numbers under a model's base path that hold a SavedModel, oldest first."""
    return sorted(version_dirs(base_path))
