"""`make run`'s launcher with the committed models: starts both processes, serves the shared
samples through the gateway, restarts a model server that was killed while the gateway answers 503
with Retry-After, and Ctrl-C stops everything (no orphans)."""

from __future__ import annotations

import json
import os
import re
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
SERVER_CMDLINE = rb"ct_standin|tensorflow_model_server"


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except OSError:
        return 0, {}


def _post_file(url: str, path: Path) -> dict:
    status, _, body = _post_status(url, path)
    assert status == 200, (status, body)
    return body


def _post_status(url: str, path: Path) -> tuple[int, dict[str, str], dict]:
    """POST `path` as the multipart field "image": status, headers and JSON body."""
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
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


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


def _start_stack() -> tuple[subprocess.Popen, str]:
    """The launcher on free ports, once /readyz answers 200: (launcher, gateway URL)."""
    port = free_port()
    env = {**os.environ, "CT_PORT": str(port)}
    cmd = [
        PYTHON,
        "-m",
        "ct_local.cli",
        "serve",
        f"--grpc-port={free_port()}",
        f"--rest-port={free_port()}",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, base)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc, base


def _wait_ready(proc: subprocess.Popen, base: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while _get(f"{base}/readyz")[0] != 200:
        assert proc.poll() is None, "the launcher exited before the stack was ready"
        assert time.monotonic() < deadline, f"not ready: {_get(base + '/readyz')}"
        time.sleep(1)


def _interrupt(proc: subprocess.Popen) -> int:
    """SIGINT (what Ctrl-C sends) and the launcher's exit code."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def _assert_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 10  # killed processes vanish once init has reaped them
    while (left := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind: {left}"


def _model_server_pid(launcher: int) -> int:
    """The launcher's child that is the model server (ct_local.standin execs the stand-in or TF
    Serving in place)."""
    (pid,) = [kid for kid in _kids(launcher) if re.search(SERVER_CMDLINE, _cmdline(kid))]
    return pid


def _gateway_pid(launcher: int) -> int | None:
    """The launcher's child that is the gunicorn master, if one is running."""
    masters = [kid for kid in _kids(launcher) if not re.search(SERVER_CMDLINE, _cmdline(kid))]
    return masters[0] if masters else None


def _kids(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True)
    return [int(kid) for kid in out.stdout.split() if _alive(int(kid))]


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_make_run_serves_committed_models_and_stops_cleanly(shared_samples):
    proc, base = _start_stack()
    port = int(base.rpartition(":")[2])
    try:
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
        code = _interrupt(proc)
    assert code == 0
    _assert_gone(children)
    for sock in stalled:
        sock.close()
    with socket.socket() as probe:  # the port is free for the next `make run`
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("0.0.0.0", port))


def test_make_run_restarts_a_killed_model_server_and_the_gateway_recovers(shared_samples):
    """kill -9 of the model server: the gateway keeps running and answers 503 with Retry-After,
    the launcher restarts the server after its backoff, and the same gateway answers 200 again;
    kill -9 of the gateway: a new one answers."""
    sample = shared_samples / "brain-stroke_stroke.jpg"
    predict = "/v1/models/brain-stroke:predict"
    proc, base = _start_stack()
    try:
        before = set(_descendants(proc.pid))
        server = _model_server_pid(proc.pid)
        os.kill(server, signal.SIGKILL)
        killed = time.monotonic()
        status, headers, body = _post_status(base + predict, sample)
        assert status == 503, body
        assert body["error"]["code"] == "model_server_unavailable", body
        assert int(headers["Retry-After"]) >= 1
        while (status := _post_status(base + predict, sample)[0]) != 200:
            assert status == 503, status
            assert proc.poll() is None, "the launcher exited"
            assert time.monotonic() - killed < START_TIMEOUT_S, "the model server did not return"
            time.sleep(0.5)
        print(f"predict answered 200 again {time.monotonic() - killed:.1f} s after kill -9")
        assert _model_server_pid(proc.pid) != server
        gateway = before - {server}
        assert gateway <= set(_descendants(proc.pid)), "the gateway was restarted too"
        # A gateway that dies is restarted as well (its orphaned workers are killed first).
        master = _gateway_pid(proc.pid)
        os.kill(master, signal.SIGKILL)
        killed = time.monotonic()
        _wait_for(lambda: _gateway_pid(proc.pid) not in (None, master))
        _wait_ready(proc, base)
        print(f"a new gateway was ready {time.monotonic() - killed:.1f} s after kill -9")
        _assert_gone(sorted(gateway))
        assert _post_status(base + predict, sample)[0] == 200
        everything = sorted(before | set(_descendants(proc.pid)))
    finally:
        code = _interrupt(proc)
    assert code == 0
    _assert_gone(everything)
