"""The model versions being served: which are loading, available or gone, kept in step with disk.

Loads happen outside the lock and a version is swapped in whole, so requests keep being served by
the versions already available while another one loads or is unloaded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from ct_standin.config import ModelConfig, list_versions, version_dirs
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
        self._loader = loader
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()

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
            self.load(self.plan())
            self._unload_dropped()

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
        model = self._models.get(name)
        if model is None or label not in model.version_labels:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}"
            )
        return model.version_labels[label]

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
