"""The node's configuration: one TOML file (CT_DICOM_NODE_CONFIG names it; example in
dicom-node/node.example.toml). Unknown keys are errors; an empty calling-AE allow list is refused
(pynetdicom would accept everyone)."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ct_dicom_node.routing import Rule, rule_from_dict

CONFIG_ENV = "CT_DICOM_NODE_CONFIG"
_AE = re.compile(r"^[\x21-\x5b\x5d-\x7e][\x20-\x5b\x5d-\x7e]{0,15}$")


class ConfigError(ValueError):
    """The configuration file is missing, malformed or says something unsafe."""


@dataclass(frozen=True)
class Peer:
    """A DICOM application entity the node sends to."""

    ae_title: str
    host: str
    port: int


@dataclass(frozen=True)
class NodeConfig:
    ae_title: str
    allowed_calling_aets: frozenset[str]
    destination: Peer
    gateway_url: str
    rules: tuple[Rule, ...]
    spool_dir: Path
    bind: str = "0.0.0.0"
    port: int = 11112
    http_port: int = 8080
    gateway_token_file: Path | None = None
    stow_token_file: Path | None = None
    gateway_timeout_s: float = 120.0
    quiet_s: float = 10.0
    max_age_s: float = 600.0
    keep_done_s: float = 900.0
    max_series_instances: int = 512
    max_series_bytes: int = 192 * 1024 * 1024
    retry_initial_s: float = 2.0
    retry_max_s: float = 300.0
    tick_s: float = 0.2
    manufacturer: str = "ct-triage"


_TOP = {
    "ae_title",
    "allowed_calling_aets",
    "bind",
    "port",
    "http_port",
    "spool_dir",
    "quiet_s",
    "max_age_s",
    "keep_done_s",
    "max_series_instances",
    "max_series_bytes",
    "retry_initial_s",
    "retry_max_s",
    "tick_s",
    "gateway",
    "destination",
    "rules",
    "stow_token_file",
}


def load(path: Path | str | None = None) -> NodeConfig:
    """Read and check the TOML file at `path` (else $CT_DICOM_NODE_CONFIG)."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(f"no configuration: set {CONFIG_ENV} to a TOML file")
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return from_dict(raw)


def from_dict(raw: dict) -> NodeConfig:
    unknown = set(raw) - _TOP
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}")
    allowed = frozenset(_ae(a) for a in raw.get("allowed_calling_aets", []))
    if not allowed:
        raise ConfigError("allowed_calling_aets is empty: no sender could associate")
    gateway = raw.get("gateway") or {}
    if not str(gateway.get("url", "")).startswith(("http://", "https://")):
        raise ConfigError("gateway.url must be an http(s) URL")
    rules = tuple(rule_from_dict(r) for r in raw.get("rules", []))
    if not rules:
        raise ConfigError("no [[rules]]: every series would be ignored")
    numbers = {k: raw[k] for k in _NUMBERS if k in raw}
    for key, value in numbers.items():
        _check_number(key, value)
    token = gateway.get("token_file")
    return NodeConfig(
        ae_title=_ae(raw.get("ae_title", "CT_TRIAGE")),
        allowed_calling_aets=allowed,
        destination=_peer(raw.get("destination") or {}),
        gateway_url=str(gateway["url"]).rstrip("/"),
        gateway_token_file=Path(token) if token else None,
        gateway_timeout_s=float(gateway.get("timeout_s", 120.0)),
        rules=rules,
        spool_dir=Path(raw.get("spool_dir", "/var/spool/ct-dicom-node")),
        bind=str(raw.get("bind", "0.0.0.0")),
        stow_token_file=Path(raw["stow_token_file"]) if raw.get("stow_token_file") else None,
        **numbers,
    )


_NUMBERS = (
    "port",
    "http_port",
    "quiet_s",
    "max_age_s",
    "keep_done_s",
    "max_series_instances",
    "max_series_bytes",
    "retry_initial_s",
    "retry_max_s",
    "tick_s",
)


_MAX = {"port": 65535, "http_port": 65535}


def _check_number(key: str, value: object) -> None:
    if key in ("port", "http_port"):  # 0: any free port (tests)
        ok = isinstance(value, int) and 0 <= value <= 65535
    else:
        ok = isinstance(value, int | float) and value > 0
    if not ok:
        raise ConfigError(f"{key} out of range: {value!r}")


def _ae(title: object) -> str:
    if not isinstance(title, str) or not _AE.match(title.strip()):
        raise ConfigError(f"not an AE title (1-16 printable characters, no backslash): {title!r}")
    return title.strip()


def _peer(raw: dict) -> Peer:
    try:
        peer = Peer(_ae(raw["ae_title"]), str(raw["host"]), int(raw["port"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"destination needs ae_title, host and port: {exc}") from None
    if not 0 < peer.port < 65536:
        raise ConfigError(f"destination port {peer.port} is not a port")
    return peer
