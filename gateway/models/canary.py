"""Canary routing over TF Serving version labels.

models.config may label two versions of a task, `stable` and `canary` (TF Serving's
`version_labels`). With CT_CANARY_SHARE set (0..1; 0 is a valid setting: stable only) the gateway
sends that share of the requests to the `canary` version and the rest to `stable`; a request
header `X-CT-Canary: 1` forces the canary, `X-CT-Canary: 0` forces stable. A task without labels
is served as before: no version asked for, so TF Serving answers with its newest available
version. With CT_CANARY_SHARE unset the gateway does not look at labels at all.

The labels are resolved to version numbers (GetModelMetadata with ModelSpec.version_label), cached
for CT_METADATA_TTL_S, and every Predict then asks for the number: all the Predicts of one request
(a series in chunks) are answered by one version, and a label removed from models.config is
drained within the TTL (TF Serving answers INVALID_ARGUMENT "Unrecognized servable version label").
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from gateway.errors import ApiError

STABLE, CANARY = "stable", "canary"
HEADER = "X-CT-Canary"
_YES = ("1", "true", "yes", "on")
_NO = ("0", "false", "no", "off")


def parse_header(value: str | None) -> bool | None:
    """True: canary forced; False: stable forced; None: the share decides (absent or unknown)."""
    if value is None:
        return None
    value = value.strip().lower()
    return True if value in _YES else False if value in _NO else None


class Router:
    """Decides per request whether it goes to the canary; thread-safe; seedable for tests."""

    def __init__(self, share: float, rng: random.Random | None = None) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"canary share {share} is not in [0, 1]")
        self.share = share
        self._rng = rng or random.Random()
        self._lock = threading.Lock()

    def wants_canary(self, forced: bool | None = None) -> bool:
        if forced is not None:
            return forced
        if self.share <= 0.0:
            return False
        if self.share >= 1.0:
            return True
        with self._lock:
            return self._rng.random() < self.share


class LabelResolver:
    """task -> {label: version} for the stable and canary labels the model server knows."""

    def __init__(
        self,
        lookup: Callable[[str, str], int],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup  # (task, label) -> version; ApiError when the label is unknown
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[str, int]]] = {}

    def versions(self, task: str) -> dict[str, int]:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(task)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        found: dict[str, int] = {}
        for label in (STABLE, CANARY):
            try:
                found[label] = self._lookup(task, label)
            except ApiError as error:
                # INVALID_ARGUMENT "Unrecognized servable version label" (or the model is gone):
                # no such label. Anything else (unavailable, deadline) fails this request.
                if error.code not in ("model_rejected", "model_not_found"):
                    raise
        with self._lock:
            self._cache[task] = (now, found)
        return found

    def route(self, task: str, canary: bool) -> tuple[int | None, str | None]:
        """(version to ask for, route name): canary when wanted and labelled, else stable when
        labelled, else (None, None): no label configured, the server's newest version."""
        labels = self.versions(task)
        if canary and CANARY in labels:
            return labels[CANARY], CANARY
        if STABLE in labels:
            return labels[STABLE], STABLE
        return None, None
