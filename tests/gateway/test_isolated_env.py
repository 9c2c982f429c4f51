"""The gateway runs from gateway/requirements.lock alone: a fresh virtualenv without TensorFlow.

The virtualenv is built once per lock (build/gateway-venv-<hash>/), as the image installs it
(--require-hashes --no-deps), from a wheelhouse (build/gateway-wheels/, filled by `pip download`),
so a second run needs no network and a changed pin downloads only what is new. Only gateway/ and
ct_contract/ are copied next to it, as in its Docker image, so the gateway cannot import anything
else from the repository either.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from ct_local.isolated import clean_env, index_unreachable
from tests.fixtures.common import PYTHON, REPO, free_port
from tests.fixtures.dicom_files import CT_SMALL, EVERY_DECODER, read_testfile, sample_path
from tests.fixtures.gateway import GatewayProcess, gateway_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REQUIREMENTS = REPO / "gateway" / "requirements.lock"
# What gateway/Dockerfile copies into the image (tests/deploy/test_dockerfiles.py checks it).
IMAGE_PACKAGES = ("gateway", "ct_contract")
BUILD = REPO / "build"
WHEELHOUSE = BUILD / "gateway-wheels"
VENV_PREFIX = "gateway-venv-"
PIP_TIMEOUT_S = 900
START_TIMEOUT_S = 120.0
# Must not be importable from the gateway's environment (tensorflow-serving-api pulls TensorFlow).
FORBIDDEN = ("tensorflow", "tensorflow_serving", "keras")


def _venv_key() -> str:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update(f"{sys.implementation.cache_tag}-{sys.platform}".encode())
    return digest.hexdigest()[:12]


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_S,
        env=clean_env(),
    )


def _install(python: Path) -> None:
    """Install the lock from the wheelhouse, downloading into it first when needed."""
    lock = ["--require-hashes", "--no-deps", "-r", str(REQUIREMENTS)]
    offline = ["install", "--no-index", "--find-links", str(WHEELHOUSE), *lock]
    if _pip(python, *offline).returncode == 0:
        return
    download = _pip(python, "download", "--dest", str(WHEELHOUSE), *lock)
    if download.returncode != 0:
        unreachable = index_unreachable()
        if unreachable:
            pytest.skip(f"PyPI is unreachable, cannot build the gateway venv ({unreachable})")
        pytest.fail(f"pip download failed:\n{download.stdout}\n{download.stderr}", pytrace=False)
    installed = _pip(python, *offline)
    if installed.returncode != 0:
        pytest.fail(f"pip install failed:\n{installed.stdout}\n{installed.stderr}", pytrace=False)


def _build_venv(target: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=BUILD))
    try:
        subprocess.run([PYTHON, "-m", "venv", str(staging)], check=True, env=clean_env())
        _install(staging / "bin" / "python")
        staging.rename(target)  # python -m ... keeps working after a move; bin/ scripts would not
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for stale in BUILD.glob(f"{VENV_PREFIX}*"):
        if stale != target:
            shutil.rmtree(stale, ignore_errors=True)


@pytest.fixture(scope="module")
def gateway_python() -> Path:
    """The Python of a virtualenv holding gateway/requirements.lock and nothing else."""
    BUILD.mkdir(exist_ok=True)
    WHEELHOUSE.mkdir(exist_ok=True)
    target = BUILD / f"{VENV_PREFIX}{_venv_key()}"
    with open(BUILD / "gateway-venv.lock", "w") as lock:  # parallel test runs build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_dir():
            _build_venv(target)
    return target / "bin" / "python"


@pytest.fixture(scope="module")
def gateway_copy(tmp_path_factory) -> Path:
    """A folder holding only what the Docker image copies, to run the gateway from."""
    root = tmp_path_factory.mktemp("gateway-only")
    for package in IMAGE_PACKAGES:
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    return root


@contextlib.contextmanager
def isolated_gateway(python: Path, cwd: Path, model_server: str):
    port = free_port()
    env = clean_env(gateway_env(model_server, CT_PORT=str(port)))
    log_fd, log_name = tempfile.mkstemp(prefix="gateway-isolated-", suffix=".log")
    with os.fdopen(log_fd, "wb") as log_file:
        process = subprocess.Popen(
            [str(python), "-m", "gateway"],
            cwd=cwd,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    gateway = GatewayProcess(process, port, Path(log_name))
    try:
        wait_until(gateway, "/readyz", START_TIMEOUT_S)
        yield gateway
    finally:
        gateway.stop()
        Path(log_name).unlink(missing_ok=True)


def _png(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((size, size)).save(buffer, "PNG")
    return buffer.getvalue()


def _predict(base_url: str, task: str, image: bytes) -> dict:
    body = json.dumps({"image_b64": base64.b64encode(image).decode()}).encode()
    request = urllib.request.Request(
        f"{base_url}/v1/models/{task}:predict",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read())


def test_gateway_venv_has_no_tensorflow(gateway_python) -> None:
    probe = (
        "import importlib.util, json, sys; "
        f"found = [m for m in {FORBIDDEN!r} if importlib.util.find_spec(m)]; "
        "print(json.dumps([sys.prefix, found]))"
    )
    out = subprocess.run(
        [str(gateway_python), "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=gateway_python.parents[1],
        env=clean_env(),
    )
    prefix, found = json.loads(out.stdout)
    assert Path(prefix) == gateway_python.parents[1]
    assert found == [], f"the gateway's environment can import {found}"


def test_gateway_venv_decodes_every_dicom_encoding(gateway_python, gateway_copy) -> None:
    """The pinned pydicom plugins are there: JPEG, JPEG-LS, JPEG 2000 and RLE objects decode."""
    probe = (
        "import json; from pathlib import Path; "
        "from ct_contract.preprocess import decode_slices; "
        f"paths = {[str(sample_path(name)) for name in EVERY_DECODER]!r}; "
        "print(json.dumps([decode_slices(Path(p).read_bytes())[0].image.mode for p in paths]))"
    )
    out = subprocess.run(
        [str(gateway_python), "-c", probe],
        capture_output=True,
        text=True,
        cwd=gateway_copy,
        env=clean_env(),
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["L", "L", "L", "L", "RGB", "RGB"]


def test_gateway_serves_from_its_own_requirements(
    gateway_python, gateway_copy, model_server, gateway_server
) -> None:
    image = _png()
    ct = read_testfile(CT_SMALL)
    with isolated_gateway(gateway_python, gateway_copy, model_server.target) as gateway:
        isolated = _predict(gateway.url, "brain-stroke", image)
        isolated_ct = _predict(gateway.url, "brain-stroke", ct)
        log = gateway.log()
    assert isolated["model"] == "brain-stroke"
    assert set(isolated["probabilities"]) == {"Normal", "Stroke"}
    assert "Traceback" not in log, log
    # The same answers as the gateway running in the full development environment.
    assert isolated == _predict(gateway_server, "brain-stroke", image)
    assert isolated_ct == _predict(gateway_server, "brain-stroke", ct)
