"""The local model server with the committed models (`python model-server/run_local.py`).

Renders models.config with absolute base_paths (the image keeps models at /models; here they live
in model-server/models), then execs the real `tensorflow_model_server` when it is on PATH, else the
TensorFlow stand-in `python -m ct_standin`, with the same tensorflow_model_server flags.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ct_local.paths import MODEL_SERVER_DIR, MODELS_CONFIG, MODELS_ROOT
from ct_standin.config import GRPC_PORT, REST_PORT, ConfigError, render_config

BINARY = "tensorflow_model_server"
IMAGE_MODELS_ROOT = "/models"  # where the container image keeps the models


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    flags = [
        f"--port={args.grpc_port}",
        f"--rest_api_port={args.rest_port}",
        f"--model_config_file={config_file}",
        f"--file_system_poll_wait_seconds={args.poll_seconds}",
    ]
    # Both servers batch as batching.config says (the stand-in implements TF Serving's semantics).
    if args.batching_config.is_file():
        flags += ["--enable_batching", f"--batching_parameters_file={args.batching_config}"]
    binary = shutil.which(BINARY)
    if binary is None:
        return [sys.executable, "-m", "ct_standin", *flags]
    if args.monitoring_config.is_file():
        flags.append(f"--monitoring_config_file={args.monitoring_config}")
    return [binary, *flags]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        config_file = write_local_config(args.config, args.models_root)
    except ConfigError as err:
        sys.exit(f"run_local: {err}")
    command = build_command(args, config_file)
    print(" ".join(command), flush=True)
    if args.dry_run:
        return
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
