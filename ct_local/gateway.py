"""The gateway as a process (`python -m gateway`, gunicorn) on a free loopback port.

It runs in its own session (process group), so stopping it reaches every worker.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ct_local.ports import free_port, http_status
from ct_local.processes import PYTHON, children, kill_group, spawn_logged, terminate

GATEWAY_START_TIMEOUT_S = 60.0


@dataclass
class GatewayProcess:
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        return children(self.process.pid)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the gunicorn master (it stops its workers), then SIGKILL the process group."""
        code = terminate(self.process, timeout)
        kill_group(self.process)  # our own session: stray workers only
        return code


def gateway_env(model_server: str, isolated: bool = True, **settings: str) -> dict[str, str]:
    """The gateway's environment: this one with CT_MODEL_SERVER=`model_server` and `settings`.

    isolated (tests, benchmarks): without this environment's CT_*/PROMETHEUS_* settings, 2 workers
    x 4 threads, `settings` win; not isolated (`make run`): the user's CT_* settings win."""
    defaults = {"CT_MODEL_SERVER": model_server, **settings}
    if not isolated:
        return {**defaults, **os.environ}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "PROMETHEUS_"))}
    return {**env, "CT_WORKERS": "2", "CT_THREADS": "4", **defaults}


def start_gateway(
    model_server: str,
    wait_for: str = "/readyz",
    timeout: float = GATEWAY_START_TIMEOUT_S,
    **env_overrides: str,
) -> GatewayProcess:
    """Run `python -m gateway` on a free port; wait until `wait_for` answers 200."""
    port = free_port()
    env = gateway_env(model_server, CT_PORT=str(port), **env_overrides)
    process, log_path = spawn_logged([PYTHON, "-m", "gateway"], "gateway-", env, new_session=True)
    gateway = GatewayProcess(process, port, log_path)
    try:
        wait_until(gateway, wait_for, timeout)
    except BaseException:
        gateway.stop()
        raise
    return gateway


def wait_until(gateway: GatewayProcess, path: str, timeout: float) -> float:
    """Seconds until GET `path` answers 200; RuntimeError with the log if it exits or times out."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if gateway.process.poll() is not None:
            raise RuntimeError(
                f"gateway exited with {gateway.process.returncode}:\n{gateway.log()}"
            )
        if http_status(gateway.url + path, timeout=5) == 200:
            return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"gateway {path} not 200 within {timeout:.0f} s:\n{gateway.log()[-4000:]}")


@contextlib.contextmanager
def running_gateway(model_server: str, **kwargs) -> Iterator[GatewayProcess]:
    """start_gateway for the `with` block; stopped and its log removed afterwards."""
    gateway = start_gateway(model_server, **kwargs)
    try:
        yield gateway
    finally:
        gateway.stop()
        with contextlib.suppress(OSError):
            gateway.log_path.unlink()


def stalled_uploads(
    port: int, count: int, path: str = "/v1/models/brain-stroke:predict"
) -> list[socket.socket]:
    """`count` connections that send headers and part of a multipart body, then stall."""
    boundary = "stall"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 100000\r\n\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n'
    ).encode()
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(head + b"\x89PNG" + b"\0" * 100)
        sockets.append(sock)
    return sockets
