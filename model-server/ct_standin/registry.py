"""The model versions being served: which are loading, available or gone, kept in step with disk.

Loads happen outside the lock and a version is swapped in whole, so requests keep being served by
the versions already available while another one loads or is unloaded.

Version labels (`version_labels` in models.config) resolve a ModelSpec.version_label to a number.
The stand-in behaves as TF Serving started with --allow_version_labels_for_unavailable_models: a
new label may name a version still loading (requests for it answer UNAVAILABLE until it is
AVAILABLE), but moving an existing label needs its new version AVAILABLE, else the whole config
change is refused (FAILED_PRECONDITION in TF Serving; logged here) and the old one kept. Without
that flag TF Serving refuses to start with labels in its config; add them by a config reload once
the versions are AVAILABLE. The config file is re-read on every file-system poll when its
modification time changes (TF Serving: --model_config_file_poll_wait_seconds), so removing a label
drains it without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from ct_standin.config import ConfigError, ModelConfig, list_versions, load_models, version_dirs
from ct_standin.errors import ServingError

log = logging.getLogger(__name__)

LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"


@dataclass
class VersionState:
    state: str
    servable: object | None = None
    error: str = ""  # why a load failed; failed versions are not retried


Loader = Callable[[str, int, "object"], object]


class Registry:
    def __init__(self, models: list[ModelConfig], loader: Loader) -> None:
        self._models = {m.name: m for m in models}
        self._versions: dict[str, dict[int, VersionState]] = {m.name: {} for m in models}
        self._labels = {m.name: dict(m.version_labels) for m in models}
        self._loader = loader
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        sources = {m.source for m in models if m.source is not None}
        self._source: Path | None = sources.pop() if len(sources) == 1 else None
        self._source_mtime = _mtime(self._source) if self._source else None

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def plan(self) -> list[tuple[str, int]]:
        """Mark the versions the policies want but are not loaded as LOADING; return them."""
        pending = []
        with self._lock:
            for name, model in self._models.items():
                states = self._versions[name]
                for version in sorted(model.policy.select(list_versions(model.base_path))):
                    current = states.get(version)
                    if current is None or (current.state == END and not current.error):
                        states[version] = VersionState(LOADING)
                        pending.append((name, version))
        return pending

    def sync(self) -> None:
        """Bring the served versions in line with disk: load new ones, then unload dropped ones."""
        with self._sync_lock:
            self._reload_config()
            self.load(self.plan())
            self._unload_dropped()

    def _reload_config(self) -> None:
        """Re-read the config file when it changed: new version policies and labels."""
        if self._source is None:
            return
        mtime = _mtime(self._source)
        if mtime is None or mtime == self._source_mtime:
            return
        self._source_mtime = mtime
        try:
            models = {m.name: m for m in load_models(self._source)}
        except ConfigError as err:
            log.error("Model config reload failed, keeping the current one: %s", err)
            return
        if set(models) != set(self._models):
            log.error(
                "Model config reload refused: the stand-in cannot add or remove models "
                "(%s -> %s); restart it",
                sorted(self._models),
                sorted(models),
            )
            return
        with self._lock:
            for name, model in models.items():
                for label, version in model.version_labels.items():
                    old = self._labels[name].get(label)
                    state = self._versions[name].get(version)
                    if old not in (None, version) and (state is None or state.state != AVAILABLE):
                        log.error(
                            "Model config reload refused: Request to assign label to version %d "
                            "of model %s, which is not currently available for inference",
                            version,
                            name,
                        )
                        return
            self._models = models
            self._labels = {name: dict(m.version_labels) for name, m in models.items()}
        log.info(
            "Reloaded model config %s: labels %s",
            self._source,
            {n: labels for n, labels in self._labels.items() if labels},
        )

    def load(self, pending: list[tuple[str, int]]) -> None:
        for name, version in sorted(pending, key=lambda p: (p[0], -p[1])):
            base = self._models[name].base_path
            # The folder's own name: "007" for version 7 (a vanished one fails to load below).
            path = version_dirs(base).get(version, base / str(version))
            started = time.monotonic()
            try:
                servable = self._loader(name, version, path)
            except Exception as err:  # a bad model must not take the server down
                log.error("Failed to load %s version %d from %s: %s", name, version, path, err)
                state = VersionState(END, error=f"{type(err).__name__}: {err}")
            else:
                log.info(
                    "Loaded %s version %d in %.2f s", name, version, time.monotonic() - started
                )
                state = VersionState(AVAILABLE, servable)
            with self._lock:
                self._versions[name][version] = state

    def _unload_dropped(self) -> None:
        with self._lock:
            for name, model in self._models.items():
                states = self._versions[name]
                keep = model.policy.select(list_versions(model.base_path))
                if keep and not any(states[v].state == AVAILABLE for v in keep if v in states):
                    continue  # the wanted versions failed: keep serving what we have
                for version, current in states.items():
                    if current.state == AVAILABLE and version not in keep:
                        log.info("Unloading %s version %d", name, version)
                        states[version] = VersionState(END)

    def resolve(self, name: str, version: int | None = None, label: str = "") -> tuple[int, object]:
        """The servable a ModelSpec asks for: a version, a label, or else the newest available."""
        if label:
            version = self._label_version(name, label)
        request = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
        with self._lock:
            states = self._versions.get(name)
            if not states:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request}"
                )
            if version is None:
                available = [v for v, s in states.items() if s.state == AVAILABLE]
                version = max(available, default=None)
                if version is None:
                    return self._not_ready(states, request)
            current = states.get(version)
            if current is None or current.state != AVAILABLE:
                return self._not_ready({version: current} if current else {}, request)
            return version, current.servable

    def _label_version(self, name: str, label: str) -> int:
        with self._lock:
            version = self._labels.get(name, {}).get(label)
        if version is None:  # TF Serving's ServerCore::GetModelVersionForLabel
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}"
            )
        return version

    @staticmethod
    def _not_ready(states: dict[int, VersionState], request: str):
        if any(s.state == LOADING for s in states.values()):
            raise ServingError(
                grpc.StatusCode.UNAVAILABLE, f"Servable is still loading for request: {request}"
            )
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request}")

    def status(self, name: str, version: int | None = None) -> list[tuple[int, VersionState]]:
        """Version states of a model, newest first, like GetModelStatus."""
        with self._lock:
            states = dict(self._versions.get(name) or {})
        if not states:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}"
            )
        if version is not None:
            if version not in states:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {name}"
                )
            return [(version, states[version])]
        return sorted(states.items(), reverse=True)

    def available_versions(self) -> dict[str, list[int]]:
        with self._lock:
            return {
                name: sorted(v for v, s in states.items() if s.state == AVAILABLE)
                for name, states in self._versions.items()
            }


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None
