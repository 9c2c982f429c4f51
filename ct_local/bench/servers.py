"""Model servers for the benchmarks: the committed models, or the tiny test models."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ct_local import standin
from ct_local.paths import MODELS_CONFIG, MODELS_ROOT
from ct_local.ports import free_port
from ct_local.standin import ModelServer, start_model_server
from ct_local.tiny_models import TINY_MODEL_NAMES, export_tiny_models
from ct_standin.config import load_models


@dataclass
class StartedServer:
    server: ModelServer
    tasks: list[str]
    command: list[str] | None  # None: the plain stand-in
    ready_s: float  # spawn to every model AVAILABLE


@contextlib.contextmanager
def committed_model_server(launcher_flags: bool = False) -> Iterator[StartedServer]:
    """The committed models (models.config with the image's /models pointing at them). With
    `launcher_flags`, started with `ct-triage model-server`'s own command: the stand-in unless
    tensorflow_model_server is on PATH, --enable_batching with batching.config either way."""
    grpc_port, rest_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        config = Path(tmp) / "models.config"
        config.write_text(standin.local_config_text(MODELS_CONFIG, MODELS_ROOT))
        command = None
        if launcher_flags:
            options = standin.parse_args([f"--grpc-port={grpc_port}", f"--rest-port={rest_port}"])
            command = standin.build_command(options, config)
        started = time.monotonic()
        server = start_model_server(config, grpc_port, rest_port, command=command)
        tasks = [m.name for m in load_models(config)]
        try:
            yield StartedServer(server, tasks, command, time.monotonic() - started)
        finally:
            server.stop()


@contextlib.contextmanager
def tiny_model_server() -> Iterator[tuple[str, list[str]]]:
    """The stand-in on freshly exported tiny models; yields (target, tasks)."""
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        server = start_model_server(export_tiny_models(Path(tmp)))
        try:
            yield server.target, list(TINY_MODEL_NAMES)
        finally:
            server.stop()
