"""The local model server: the stand-in (`python -m ct_standin`), or `tensorflow_model_server`
when it is on PATH, with the same flags.

- `ct-triage model-server` (`main`, also `python -m ct_local.standin`; `make run` supervises it):
  renders models.config with absolute base_paths (the image keeps models at /models; here they
  live in model-server/models), then execs the server in place;
- `start_model_server` / `ModelServer`: a server as a child process on loopback ports, waited for
  until every model is AVAILABLE (the tests and the benchmarks).

The TF Serving protos import TensorFlow, so they are imported only when a server is waited for:
callers that never start a model server stay free of TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from ct_local.paths import MODEL_SERVER_DIR, MODELS_CONFIG, MODELS_ROOT
from ct_local.ports import free_port
from ct_local.processes import PYTHON, spawn_logged, terminate
from ct_standin.config import GRPC_PORT, REST_PORT, ConfigError, load_models, render_config

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


def server_flags(config: Path, grpc_port: int, rest_port: int, poll_seconds: float) -> list[str]:
    """The tensorflow_model_server flags both servers take for `config` on these ports."""
    return [
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_config_file={config}",
        f"--file_system_poll_wait_seconds={poll_seconds}",
    ]


def standin_command(config: Path, grpc_port: int, rest_port: int, poll_seconds: float) -> list[str]:
    return [PYTHON, "-m", "ct_standin", *server_flags(config, grpc_port, rest_port, poll_seconds)]


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


BINARY = "tensorflow_model_server"
IMAGE_MODELS_ROOT = "/models"  # where the container image keeps the models


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ct-triage model-server", description="the local model server, committed models"
    )
    parser.add_argument("--config", type=Path, default=MODELS_CONFIG)
    parser.add_argument(
        "--models-root",
        type=Path,
        default=MODELS_ROOT,
        help=f"local folder standing for the image's {IMAGE_MODELS_ROOT}",
    )
    parser.add_argument("--grpc-port", type=int, default=GRPC_PORT)
    parser.add_argument("--rest-port", type=int, default=REST_PORT)
    parser.add_argument(
        "--poll-seconds", type=int, default=1, help="seconds between scans for new model versions"
    )
    parser.add_argument(
        "--batching-config", type=Path, default=MODEL_SERVER_DIR / "batching.config"
    )
    parser.add_argument(
        "--monitoring-config", type=Path, default=MODEL_SERVER_DIR / "monitoring.config"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    return parser.parse_args(argv)


def local_config_text(config: Path, models_root: Path) -> str:
    """`config` with the image's /models base_paths pointing at `models_root`."""
    return render_config(config, {IMAGE_MODELS_ROOT: models_root})


def local_config_path(pid: int) -> Path:
    """Where the server with `pid` reads its config (`make run`'s launcher removes it)."""
    return Path(tempfile.gettempdir()) / f"ct-triage-models-{pid}.config"


def write_local_config(config: Path, models_root: Path) -> Path:
    """The config with local absolute base_paths, in a temp file named after this process
    (which becomes the server's: exec keeps the pid)."""
    path = local_config_path(os.getpid())
    path.write_text(local_config_text(config, models_root))
    return path


def build_command(args: argparse.Namespace, config_file: Path) -> list[str]:
    flags = server_flags(config_file, args.grpc_port, args.rest_port, args.poll_seconds)
    # Both servers batch as batching.config says (the stand-in implements TF Serving's semantics).
    if args.batching_config.is_file():
        flags += ["--enable_batching", f"--batching_parameters_file={args.batching_config}"]
    binary = shutil.which(BINARY)
    if binary is None:
        return [PYTHON, "-m", "ct_standin", *flags]
    if args.monitoring_config.is_file():
        flags.append(f"--monitoring_config_file={args.monitoring_config}")
    return [binary, *flags]


def main(argv: list[str] | None = None) -> int:
    """`ct-triage model-server`: exec the model server in this process (it keeps the pid)."""
    args = parse_args(argv)
    try:
        config_file = write_local_config(args.config, args.models_root)
    except ConfigError as err:
        print(f"ct-triage model-server: {err}", file=sys.stderr)
        return 1
    command = build_command(args, config_file)
    print(" ".join(command), flush=True)
    if args.dry_run:
        return 0
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
