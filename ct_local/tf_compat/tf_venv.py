"""The TensorFlow to compare against: build/venv-tf-<version>/ (built once, then reused), and the
probe run under an interpreter with nothing of the environment leaking into it."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ct_local.isolated import clean_env, index_unreachable
from ct_local.paths import REPO
from ct_local.tf_compat import probe

BUILD = probe.BUILD
VENV_PREFIX = "venv-tf-"
PIP_TIMEOUT_S = 480  # under the test's 600 s, so a stuck download is reported, not killed
PROBE_TIMEOUT_S = 600


class EnvError(RuntimeError):
    """The TensorFlow to compare against cannot be installed or run."""


def venv_dir(version: str) -> Path:
    return BUILD / f"{VENV_PREFIX}{version}"


def _venv_python(target: Path) -> Path:
    return target / "bin" / "python"


def _tf_version_of(python: Path) -> str | None:
    out = subprocess.run(
        [str(python), "-I", "-c", "import tensorflow as tf; print(tf.__version__)"],
        capture_output=True,
        text=True,
        env=clean_env(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""),
        timeout=PROBE_TIMEOUT_S,
    )
    return out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout else None


def _pip_install(python: Path, requirement: str, version: str) -> None:
    pip = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "install"]
        + ["--quiet", requirement],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=PIP_TIMEOUT_S,
    )
    if pip.returncode == 0:
        return
    said = (pip.stdout + pip.stderr).strip()[-3000:]
    unreachable = index_unreachable()
    if unreachable:
        raise EnvError(
            f"PyPI is unreachable ({unreachable}), so {requirement} cannot be installed "
            f"and the models cannot be checked against TF Serving {version}.\n"
            f"pip said:\n{said}"
        )
    raise EnvError(f"pip install {requirement} failed:\n{said}")


def _build_venv(target: Path, version: str) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".building-{target.name}-", dir=BUILD))
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(staging)], check=True, env=clean_env(), timeout=300
        )
        requirement = f"tensorflow-cpu=={version}"
        print(f"installing {requirement} into {target.relative_to(REPO)} ...", file=sys.stderr)
        _pip_install(_venv_python(staging), requirement, version)
        installed = _tf_version_of(_venv_python(staging))
        if installed != version:
            raise EnvError(f"{requirement} installed, but the venv imports TF {installed!r}")
        staging.rename(target)  # `python -m` and `-c` keep working after a move
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_venv(version: str) -> tuple[Path, float | None]:
    """The Python of build/venv-tf-<version>/ (built when missing) and the seconds a build took
    (None when reused). Parallel runs build it once."""
    BUILD.mkdir(exist_ok=True)
    target = venv_dir(version)
    with open(BUILD / f"{VENV_PREFIX}{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir() and _tf_version_of(_venv_python(target)) == version:
            return _venv_python(target), None
        shutil.rmtree(target, ignore_errors=True)  # half-built or broken: start over
        started = time.monotonic()
        _build_venv(target, version)
        return _venv_python(target), time.monotonic() - started


def dir_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def run_probe(
    python: Path, version_dirs: list[Path], signatures: dict[str, int], label: str
) -> tuple[dict, float]:
    """Run probe.py under `python` (isolated mode, by file path); returns (result, seconds)."""
    with tempfile.TemporaryDirectory(prefix="tf-compat-") as tmp:
        out = Path(tmp) / "probe.json"
        cmd = [str(python), "-I", str(Path(probe.__file__).resolve()), "--out", str(out)]
        cmd += ["--signatures", json.dumps(signatures)]
        cmd += [str(v) for v in version_dirs]
        started = time.monotonic()
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=tmp,
            env=clean_env(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""),
            timeout=PROBE_TIMEOUT_S,
        )
        seconds = time.monotonic() - started
        if done.returncode != 0 or not out.is_file():
            raise EnvError(
                f"the probe under {label} ({python}) failed with status {done.returncode}:\n"
                f"{(done.stdout + done.stderr).strip()[-4000:]}"
            )
        return json.loads(out.read_text()), seconds
