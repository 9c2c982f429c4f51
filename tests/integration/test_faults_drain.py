"""Faults: the gateway stopped (SIGTERM) while requests are in flight drains them, refuses new
connections, and exits within gunicorn's graceful timeout. A real gateway in front of an in-process
fake model server whose predictions are slow.
"""

from __future__ import annotations

import runpy
import signal
import socket
import threading
import time

import pytest

from tests.fixtures.common import REPO
from tests.fixtures.gateway import FakeModel, FakeModelServer, is_serving_call, start_gateway
from tests.integration.fault_load import CLIENT_TIMEOUT_S, Outcome, load_images, post_once

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DRAIN_DELAY_S = 2.5  # the slow model server's answer time while the gateway drains


def gunicorn_setting(name: str, monkeypatch, tmp_path, **env: str) -> object:
    """A setting as gateway/gunicorn.conf.py derives it from these CT_* variables."""
    for key, value in {"CT_MODELS": "brain-stroke", **env}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    return runpy.run_path(str(REPO / "gateway" / "gunicorn.conf.py"))[name]


def test_sigterm_drains_in_flight_requests(monkeypatch, tmp_path) -> None:
    env = {"CT_MODELS": "brain-stroke", "CT_WORKERS": "2", "CT_GRPC_DEADLINE_S": "5"}
    graceful_timeout = gunicorn_setting("graceful_timeout", monkeypatch, tmp_path, **env)
    fake = FakeModelServer({"brain-stroke": [FakeModel()]})
    gw = start_gateway(fake.target, **env)
    image = next(img for task, img in load_images() if task == "brain-stroke")
    try:
        for _ in range(6):
            assert post_once(gw.port, image).status == 200
        # only predictions are slow: a worker that has not cached the model's info yet still
        # gets its request to the model server at once, so all three are in flight at SIGTERM
        fake.delay_s, fake.delay_only_serving = DRAIN_DELAY_S, True
        before = len(fake.calls)
        results: list[Outcome] = []
        clients = [
            threading.Thread(target=lambda: results.append(post_once(gw.port, image)))
            for _ in range(3)
        ]
        for thread in clients:
            thread.start()
        until = time.monotonic() + 5
        while serving_calls(fake, before) < 3 and time.monotonic() < until:
            time.sleep(0.02)
        term = time.monotonic()
        gw.process.send_signal(signal.SIGTERM)
        refused_after = wait_refused(gw.port, timeout=graceful_timeout)
        done_when_refused = len(results)
        for thread in clients:
            thread.join(CLIENT_TIMEOUT_S)
        code = gw.process.wait(graceful_timeout + 5)
        exited_after = time.monotonic() - term
    finally:
        gw.stop()
        fake.stop()
    print(
        "\n[faults] SIGTERM drain: in-flight",
        [(o.status, round(o.latency_s, 2)) for o in results],
        f"new connections refused after {refused_after} s (in-flight done then:"
        f" {done_when_refused}), exit {code} after {exited_after:.2f} s",
    )
    assert [o.status for o in results] == [200, 200, 200], results
    assert code == 0, gw.log()[-2000:]
    assert exited_after <= graceful_timeout
    assert refused_after is not None, "the gateway kept accepting connections while draining"
    assert done_when_refused == 0, "new connections were accepted until the drain ended"


def serving_calls(fake: FakeModelServer, since: int) -> int:
    return sum(is_serving_call(method, spec) for method, _, spec in fake.calls[since:])


def wait_refused(port: int, timeout: float) -> float | None:
    """Seconds until a TCP connect to port is refused."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except ConnectionRefusedError:
            return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    return None
