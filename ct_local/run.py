"""`make run`: the local model server and the gateway in the foreground; Ctrl-C stops both.

Both are supervised (ct_local/supervise.py): one that dies is restarted with capped exponential
backoff while the other keeps running; the gateway answers 503 with Retry-After while the model
server is away and reconnects by itself. The model names come from model-server/models.config
(the one list of served models), so the gateway is configured with exactly what the model server
serves.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from ct_local.gateway import gateway_env
from ct_local.paths import MODELS_CONFIG
from ct_local.standin import local_config_path
from ct_local.supervise import Backoff, Child, Supervisor
from ct_standin.config import GRPC_PORT, REST_PORT, load_models

GATEWAY_CONFIG_ERROR = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-port", type=int, default=GRPC_PORT, help="model server gRPC")
    parser.add_argument("--rest-port", type=int, default=REST_PORT, help="model server REST")
    defaults = Backoff()
    parser.add_argument(
        "--backoff-initial",
        type=float,
        default=defaults.initial_s,
        help="seconds before the first restart of a child that died",
    )
    parser.add_argument(
        "--backoff-cap", type=float, default=defaults.cap_s, help="longest wait between restarts"
    )
    return parser.parse_args(argv)


def children(args: argparse.Namespace, models: list[str]) -> list[Child]:
    """The model server (ct_local.standin) and the gateway. The gateway's exit code 2 is its
    configuration error (gateway/__main__.py), which a restart cannot fix."""
    server = [
        sys.executable,
        "-m",
        "ct_local.standin",
        f"--grpc-port={args.grpc_port}",
        f"--rest-port={args.rest_port}",
    ]
    gateway = [sys.executable, "-m", "gateway"]
    env = gateway_env(f"localhost:{args.grpc_port}", isolated=False, CT_MODELS=",".join(models))
    return [
        Child("model server", server, on_exit=_remove_local_config),
        Child("gateway", gateway, env=env, fatal_codes=frozenset({GATEWAY_CONFIG_ERROR})),
    ]


def _remove_local_config(pid: int) -> None:
    local_config_path(pid).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models = [m.name for m in load_models(MODELS_CONFIG)]
    backoff = Backoff(initial_s=args.backoff_initial, cap_s=args.backoff_cap)
    supervisor = Supervisor(children(args, models), backoff)
    # Explicit for SIGINT too: a launcher started in the background inherits SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, supervisor.request_stop)
    print(
        f"serving {', '.join(models)}: gateway on http://localhost:"
        f"{os.environ.get('CT_PORT', '9696')} once /readyz answers 200; a model server or gateway "
        f"that dies is restarted (backoff {backoff.initial_s:g} s doubling to {backoff.cap_s:g} s)",
        flush=True,
    )
    return supervisor.run()
