"""Child processes of the local stack: started with a log file, stopped with a grace period."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ct_local.paths import REPO

PYTHON = sys.executable


def spawn_logged(
    command: list[str], prefix: str, env: dict[str, str] | None = None, new_session: bool = False
) -> tuple[subprocess.Popen, Path]:
    """Start `command` in the repository with stdout and stderr going to a new temp log file."""
    log_fd, log_name = tempfile.mkstemp(prefix=prefix, suffix=".log")
    with os.fdopen(log_fd, "wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
    return process, Path(log_name)


def terminate(process: subprocess.Popen, timeout: float) -> int:
    """SIGTERM, then SIGKILL if it does not exit within `timeout`; returns the exit code."""
    return terminate_all([process], timeout)[0]


def terminate_all(processes: list[subprocess.Popen], timeout: float) -> list[int]:
    """SIGTERM each, then SIGKILL each that has not exited when `timeout` (one deadline for all,
    so they drain side by side) is over; returns their exit codes."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return [process.returncode for process in processes]


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL what is left of the process group a child leads (started with new_session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """The direct children of `pid` (Linux /proc)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(k) for k in (task / "children").read_text().split()]
    return kids
