"""`ct-triage model-server` (ct_local/standin.py): the real tensorflow_model_server when it is
on PATH, else the stand-in."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ct_local.standin import start_model_server
from ct_standin.config import GRPC_PORT, REST_PORT, load_models
from tests.fixtures.common import PYTHON, REPO, TINY_MODELS, free_port

LAUNCHER = [PYTHON, "-m", "ct_local.cli", "model-server"]
FAKE_BINARY = """#!/bin/sh
printf '%s\\n' "$@" > "$ARGV_FILE"
"""


def image_style_config(path: Path) -> Path:
    """A models.config as the image has it: base paths under /models."""
    entries = "".join(
        f'config {{ name: "{t[0]}" base_path: "/models/{t[0]}" }}\n' for t in TINY_MODELS
    )
    path.write_text(f"model_config_list {{\n{entries}}}\n")
    return path


def path_without_binary() -> str:
    """PATH for a machine without the TF Serving binary (as this one): system folders only."""
    path = os.pathsep.join(["/usr/local/bin", "/usr/bin", "/bin"])
    if shutil.which("tensorflow_model_server", path=path):
        pytest.skip("tensorflow_model_server is installed system-wide here")
    return path


def test_real_binary_is_used_when_on_path(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "tensorflow_model_server"
    fake.write_text(FAKE_BINARY)
    fake.chmod(0o755)
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 8 }\n")
    argv_file = tmp_path / "argv"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{path_without_binary()}",
        "ARGV_FILE": str(argv_file),
    }
    models_root = tmp_path / "models"
    subprocess.run(
        [
            *LAUNCHER,
            f"--config={image_style_config(tmp_path / 'm.config')}",
            f"--models-root={models_root}",
            f"--batching-config={batching}",
            f"--monitoring-config={tmp_path / 'absent.config'}",
        ],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    argv = argv_file.read_text().splitlines()
    flags = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    assert flags["--port"] == str(GRPC_PORT) and flags["--rest_api_port"] == str(REST_PORT)
    assert "--enable_batching" in argv and flags["--batching_parameters_file"] == str(batching)
    assert "--monitoring_config_file" not in flags  # that file does not exist
    served = load_models(Path(flags["--model_config_file"]))
    assert [m.base_path for m in served] == [models_root / t[0] for t in TINY_MODELS]


def test_dry_run_without_the_binary_names_the_standin(tmp_path):
    out = subprocess.run(
        [
            *LAUNCHER,
            "--dry-run",
            f"--config={image_style_config(tmp_path / 'm.config')}",
        ],
        env={**os.environ, "PATH": path_without_binary()},
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    assert "-m ct_standin" in out and "--enable_batching" in out  # the stand-in batches too
    assert f"--batching_parameters_file={REPO / 'model-server' / 'batching.config'}" in out


def test_bad_config_is_a_clear_error(tmp_path):
    (tmp_path / "m.config").write_text("model_config_list { oops")
    result = subprocess.run(
        [*LAUNCHER, "--dry-run", f"--config={tmp_path / 'm.config'}"],
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "not a valid ModelServerConfig" in result.stderr


@pytest.mark.integration
def test_standin_is_started_without_the_binary(tmp_path, tiny_models_root):
    grpc_port, rest_port = free_port(), free_port()
    config = image_style_config(tmp_path / "m.config")
    command = [
        *LAUNCHER,
        f"--config={config}",
        f"--models-root={tiny_models_root}",
        f"--grpc-port={grpc_port}",
        f"--rest-port={rest_port}",
    ]
    server = start_model_server(  # `config` only names the models to wait for
        config,
        grpc_port,
        rest_port,
        command=command,
        env={**os.environ, "PATH": path_without_binary()},
    )
    try:
        assert "ct_standin" in server.log()
    finally:
        assert server.stop() == 0
