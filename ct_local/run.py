"""`make run`: the local model server and the gateway in the foreground; Ctrl-C stops both.

The model names come from model-server/models.config (the one list of served models), so the
gateway is configured with exactly what the model server serves.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time

from ct_local.paths import MODELS_CONFIG, REPO
from ct_standin.config import load_models
from ct_standin.ports import GRPC_PORT, REST_PORT

STOP_TIMEOUT_S = 15


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-port", type=int, default=GRPC_PORT, help="model server gRPC")
    parser.add_argument("--rest-port", type=int, default=REST_PORT, help="model server REST")
    return parser.parse_args(argv)


def gateway_env(models: list[str], grpc_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CT_MODELS", ",".join(models))
    env.setdefault("CT_MODEL_SERVER", f"localhost:{grpc_port}")
    return env


def stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each child; whatever is left of its process group after STOP_TIMEOUT_S (gunicorn
    workers still draining a stalled client, a leader already gone) is SIGKILLed, so nothing
    outlives the launcher or keeps its ports."""
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
    for proc in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session (start_new_session)
        proc.wait()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def start(args: argparse.Namespace, models: list[str]) -> list[subprocess.Popen]:
    """The model server (ct_local.run_local) and the gateway, each leading its own process
    group, so stop() can reach their workers whatever they do."""
    server = [
        sys.executable,
        "-m",
        "ct_local.run_local",
        f"--grpc-port={args.grpc_port}",
        f"--rest-port={args.rest_port}",
    ]
    gateway = [sys.executable, "-m", "gateway"]
    return [
        subprocess.Popen(server, cwd=REPO, start_new_session=True),
        subprocess.Popen(
            gateway, cwd=REPO, env=gateway_env(models, args.grpc_port), start_new_session=True
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models = [m.name for m in load_models(MODELS_CONFIG)]
    processes = start(args, models)
    # Explicit for SIGINT too: a launcher started in the background inherits SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    print(
        f"serving {', '.join(models)}: gateway on http://localhost:"
        f"{os.environ.get('CT_PORT', '9696')} once /readyz answers 200",
        flush=True,
    )
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        failed = next(p for p in processes if p.poll() is not None)
        print(f"{failed.args[-1]} exited with {failed.returncode}; stopping", file=sys.stderr)
        return failed.returncode or 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(processes)
