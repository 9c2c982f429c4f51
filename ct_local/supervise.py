"""`make run`'s supervisor: children that die are restarted with capped exponential backoff.

Each child leads its own process group (a new session), so what is left of one that died (gunicorn
workers of a killed master) and everything at shutdown can be reached with one killpg. Signals only
set a flag, read between polls: a signal never lands in the middle of starting or stopping a child,
so no child is started untracked and a second Ctrl-C cannot cut the shutdown short.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ct_local.paths import REPO
from ct_local.processes import kill_group, terminate_all

STOP_TIMEOUT_S = 15.0  # SIGTERM grace for every child together, then SIGKILL of their groups
POLL_S = 0.2


@dataclass(frozen=True)
class Backoff:
    """The delay before restart n of a child that keeps dying: initial_s doubling up to cap_s; a
    child that ran stable_s or longer before it died starts again from initial_s."""

    initial_s: float = 1.0
    cap_s: float = 30.0
    stable_s: float = 60.0

    def delay(self, failures: int) -> float:
        return min(self.cap_s, self.initial_s * 2 ** max(0, failures - 1))


@dataclass
class Child:
    """One supervised command; `fatal_codes` are exit codes a restart cannot fix (the stack
    stops with that code instead)."""

    name: str
    command: list[str]
    env: dict[str, str] | None = None
    fatal_codes: frozenset[int] = frozenset()
    on_exit: Callable[[int], None] | None = None  # clean-up, with the pid, once it is gone
    process: subprocess.Popen | None = None
    started: float = 0.0
    failures: int = 0  # deaths in a row, each after less than Backoff.stable_s
    restart_at: float | None = None
    restarts: int = 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command, cwd=REPO, env=self.env, start_new_session=True
        )
        self.started = time.monotonic()
        self.restart_at = None

    def exited(self) -> int | None:
        """Its exit code once it has died (and was not yet scheduled for a restart), else None."""
        if self.process is None or self.restart_at is not None:
            return None
        return self.process.poll()

    def kill_group(self) -> None:
        """SIGKILL whatever is left of its process group (a gunicorn master's workers), then the
        on_exit clean-up."""
        if self.process is not None:
            kill_group(self.process)
            if self.on_exit is not None:
                self.on_exit(self.process.pid)


def describe(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exited with {code}"


def _log(message: str) -> None:
    print(f"run: {message}", file=sys.stderr, flush=True)


@dataclass
class Supervisor:
    children: list[Child]
    backoff: Backoff = field(default_factory=Backoff)
    log: Callable[[str], None] = _log
    stop_timeout_s: float = STOP_TIMEOUT_S
    stop_requested: bool = False

    def request_stop(self, signum: int, frame: object = None) -> None:
        """The SIGINT/SIGTERM handler: only a flag (see the module docstring)."""
        self.stop_requested = True

    def run(self) -> int:
        """Start the children and keep them running until a stop is requested (0) or one exits
        with a fatal code (that code); every child is stopped on the way out."""
        try:
            for child in self.children:
                child.start()
            while not self.stop_requested:
                code = self.tick(time.monotonic())
                if code is not None:
                    return code
                time.sleep(POLL_S)
            return 0
        finally:
            self.stop()

    def tick(self, now: float) -> int | None:
        """Schedule a restart for each child that died, start each one whose delay is over;
        a fatal exit code is returned instead."""
        for child in self.children:
            code = child.exited()
            if code is not None:
                if code in child.fatal_codes:
                    self.log(f"{child.name} {describe(code)}: a restart cannot fix it; stopping")
                    return code
                self.schedule(child, code, now)
            elif child.restart_at is not None and now >= child.restart_at:
                child.start()
                child.restarts += 1
                self.log(f"{child.name} restarted (pid {child.process.pid})")
        return None

    def schedule(self, child: Child, code: int, now: float) -> None:
        child.kill_group()  # e.g. gunicorn workers still holding the port
        child.failures = 1 if now - child.started >= self.backoff.stable_s else child.failures + 1
        delay = self.backoff.delay(child.failures)
        child.restart_at = now + delay
        self.log(f"{child.name} {describe(code)}; restarting in {delay:g} s")

    def stop(self) -> None:
        """SIGTERM each running child; whatever is left of its process group after stop_timeout_s
        (gunicorn workers still draining a stalled client, a leader already gone) is SIGKILLed,
        so nothing outlives the launcher or keeps its ports."""
        # A child waiting for its restart had its group killed when it died (schedule).
        running = [c for c in self.children if c.process is not None and c.restart_at is None]
        terminate_all([child.process for child in running], self.stop_timeout_s)
        for child in running:
            child.kill_group()
