"""The model server as a process on loopback ports, started and waited for until AVAILABLE.

The TF Serving protos import TensorFlow, so they are imported only when a server is waited for:
callers that never start a model server stay free of TensorFlow.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from ct_local.ports import free_port
from ct_local.processes import PYTHON, spawn_logged, terminate
from ct_standin.config import load_models

START_TIMEOUT_S = 180.0  # TensorFlow import plus model loads on a busy 2-core machine


@dataclass
class ModelServer:
    process: subprocess.Popen
    grpc_port: int
    rest_port: int
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        return terminate(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL, no grace: what a crashed or evicted server looks like to clients."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def standin_command(config: Path, grpc_port: int, rest_port: int, poll_seconds: float) -> list[str]:
    return [
        PYTHON,
        "-m",
        "ct_standin",
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_config_file={config}",
        f"--file_system_poll_wait_seconds={poll_seconds}",
    ]


def start_model_server(
    config: Path,
    grpc_port: int | None = None,
    rest_port: int | None = None,
    poll_seconds: float = 1.0,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = START_TIMEOUT_S,
) -> ModelServer:
    """Start the stand-in (or `command`, which must serve `config` on the given ports) and wait
    until every model in `config` is AVAILABLE; raises RuntimeError with the server's log if not."""
    grpc_port = grpc_port or free_port()
    rest_port = rest_port or free_port()
    command = command or standin_command(config, grpc_port, rest_port, poll_seconds)
    process, log_path = spawn_logged(command, "model-server-", dict(env or os.environ))
    server = ModelServer(process, grpc_port, rest_port, log_path)
    try:
        wait_until_available(server, [m.name for m in load_models(config)], timeout)
    except BaseException:
        server.kill()
        raise
    return server


def _all_available(stub, names: list[str]) -> bool:
    from tensorflow_serving.apis import get_model_status_pb2

    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    for name in names:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        try:
            response = stub.GetModelStatus(request, timeout=5)
        except grpc.RpcError:
            return False
        if not any(s.state == available for s in response.model_version_status):
            return False
    return True


def wait_until_available(server: ModelServer, names: list[str], timeout: float) -> float:
    """Seconds until GetModelStatus says AVAILABLE for every model, else RuntimeError."""
    from tensorflow_serving.apis import model_service_pb2_grpc

    started = time.monotonic()
    with grpc.insecure_channel(server.target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        while time.monotonic() - started < timeout:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"model server exited with {server.process.returncode}:\n{server.log()[-4000:]}"
                )
            if _all_available(stub, names):
                return time.monotonic() - started
            time.sleep(0.2)
    raise RuntimeError(
        f"model server not AVAILABLE for {names} within {timeout:.0f} s:\n{server.log()[-4000:]}"
    )
