"""Series assembly: a series is due when no instance arrived for `quiet_s`, or it is `max_age_s`
old; a series whose processing failed for a passing reason waits for its retry time.

Times are seconds on the wall clock (file mtimes carry them across a restart) and are always
passed in, so the logic is tested without sleeping."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class SeriesState:
    first_s: float
    last_s: float
    count: int = 0
    size: int = 0
    attempts: int = 0
    retry_at_s: float = 0.0


class Assembler:
    def __init__(self, quiet_s: float, max_age_s: float) -> None:
        self.quiet_s = quiet_s
        self.max_age_s = max_age_s
        self._series: dict[str, SeriesState] = {}
        self._lock = threading.Lock()

    def arrived(self, key: str, now_s: float, size: int, count: int = 1) -> SeriesState:
        """Record `count` instances of `size` bytes in all arriving (or found) at `now_s`."""
        with self._lock:
            state = self._series.setdefault(key, SeriesState(first_s=now_s, last_s=now_s))
            state.first_s = min(state.first_s, now_s)
            state.last_s = max(state.last_s, now_s)
            state.count += count
            state.size += size
            return SeriesState(**vars(state))

    def peek(self, key: str) -> SeriesState | None:
        with self._lock:
            state = self._series.get(key)
            return None if state is None else SeriesState(**vars(state))

    def due(self, now_s: float) -> list[str]:
        """Keys of the complete series, oldest first."""
        with self._lock:
            ready = [
                (state.first_s, key)
                for key, state in self._series.items()
                if now_s >= state.retry_at_s
                and (
                    now_s - state.last_s >= self.quiet_s or now_s - state.first_s >= self.max_age_s
                )
            ]
        return [key for _, key in sorted(ready)]

    def take(self, key: str) -> SeriesState | None:
        """Remove a series to process it (instances arriving meanwhile start a new state)."""
        with self._lock:
            return self._series.pop(key, None)

    def retry_later(self, key: str, state: SeriesState, now_s: float, delay_s: float) -> None:
        """Put a taken series back, due again at `now_s + delay_s` (merged with new arrivals)."""
        with self._lock:
            current = self._series.get(key)
            state.attempts += 1
            state.retry_at_s = now_s + delay_s
            if current is not None:
                state.last_s = max(state.last_s, current.last_s)
                state.count += current.count
                state.size += current.size
            self._series[key] = state

    def pending(self) -> int:
        with self._lock:
            return len(self._series)

    def oldest_s(self) -> float | None:
        with self._lock:
            return min((s.first_s for s in self._series.values()), default=None)


def backoff_s(attempts: int, initial_s: float, max_s: float) -> float:
    """Exponential backoff: initial, 2x, 4x, ... capped at max_s."""
    return min(max_s, initial_s * 2 ** max(0, attempts))
