"""Shared by the stand-in's batching tests: a long batch timeout (a batch runs only when full,
the tests' synchronisation), polling for a condition, and running calls concurrently."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent import futures

from ct_standin.errors import ServingError

LONG_TIMEOUT_US = 30_000_000  # a batch runs only when full: the tests' synchronisation
WAIT_S = 30.0


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def run_all(calls: list[Callable[[], object]]) -> list[object]:
    """Run the calls concurrently; each result is its value or the exception it raised."""

    def capture(call):
        try:
            return call()
        except ServingError as err:
            return err

    with futures.ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(capture, calls))
