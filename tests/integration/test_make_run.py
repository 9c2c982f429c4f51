"""`make run`'s launcher with the committed models: starts both processes, serves the shared
samples through the gateway, and Ctrl-C stops everything (no orphans)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.fixtures.common import PYTHON, REPO, free_port
from tests.fixtures.gateway import stalled_uploads

pytestmark = [pytest.mark.integration, pytest.mark.slow]
START_TIMEOUT_S = 240


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except OSError:
        return 0, {}


def _post_file(url: str, path: Path) -> dict:
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    kids = [int(p) for p in out.stdout.split()]
    return kids + [d for k in kids for d in _descendants(k)]


def test_make_run_serves_committed_models_and_stops_cleanly(shared_samples):
    port = free_port()
    env = {**os.environ, "CT_PORT": str(port)}
    cmd = [
        PYTHON,
        "scripts/run_stack.py",
        f"--grpc-port={free_port()}",
        f"--rest-port={free_port()}",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while _get(f"{base}/readyz")[0] != 200:
            assert proc.poll() is None, "the launcher exited before the stack was ready"
            assert time.monotonic() < deadline, f"not ready: {_get(base + '/readyz')}"
            time.sleep(1)
        models = {m["task"] for m in _get(f"{base}/v1/models")[1]["models"]}
        assert {"brain-stroke", "brain-tumor"} <= models

        stroke = _post_file(
            f"{base}/v1/models/brain-stroke:predict", shared_samples / "brain-stroke_stroke.jpg"
        )
        assert stroke["model"] == "brain-stroke" and stroke["label"] == "Stroke"
        assert stroke["positive"] is True
        tumor = _post_file(
            f"{base}/v1/models/brain-tumor:predict", shared_samples / "brain-tumor_mri_glioma.jpg"
        )
        assert tumor["label"] == "mri_glioma"
        assert abs(sum(tumor["probabilities"].values()) - 1) < 1e-3
        children = _descendants(proc.pid)
        assert len(children) >= 3  # model server, gunicorn master, its workers
        stalled = stalled_uploads(port, 5)  # Ctrl-C must stop everything even with these open
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0
    deadline = time.monotonic() + 10  # killed processes vanish once init has reaped them
    while (left := [pid for pid in children if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind: {left}"
    for sock in stalled:
        sock.close()
    with socket.socket() as probe:  # the port is free for the next `make run`
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("0.0.0.0", port))
