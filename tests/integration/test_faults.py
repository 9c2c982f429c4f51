"""Faults: the model server killed and restarted under load, frozen, and a gRPC client's reconnect
after an outage. Real processes on loopback: `python -m gateway` (gunicorn) in front of its own
stand-in (ct_local.standin), which these tests kill, restart and freeze. The gateway's SIGTERM
drain is in test_faults_drain.py, the load generator in fault_load.py.

What must hold: every request gets an answer (no client timeout, no reset), every failure is a JSON
503 (with Retry-After) or 504 within the gRPC deadline plus a little slack, readiness follows the
model server, and predictions resume within RECOVERY_LIMIT_S of the model server being AVAILABLE.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import time
from dataclasses import dataclass

import grpc
import pytest

from ct_local.standin import ModelServer, start_model_server
from gateway.config import Settings
from gateway.errors import ApiError
from gateway.tfs.client import RECONNECT_INTERVAL_S, TfsClient
from tests.fixtures.gateway import FakeModel, FakeModelServer, http_status, running_gateway
from tests.integration.fault_load import (
    CLIENT_TIMEOUT_S,
    DEADLINE_S,
    LOAD_THREADS,
    SLACK_S,
    Load,
    Outcome,
    assert_failure_shape,
    load_images,
    post,
    report,
    wait_for_status,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECOVERY_LIMIT_S = 5.0
# Long enough for a 200 ms -> 5 s reconnect backoff to reach its cap: recovery could take 5 s.
OUTAGE_S = 10.0
WAIT_S = 60.0  # generous time-out for a condition of the load (busy 2-core machine)


@dataclass
class Standin:
    """The module's own model server; tests replace `server` when they restart it."""

    config: object
    server: ModelServer

    def restart(self) -> float:
        """Start a new stand-in on the same ports; returns when every model is AVAILABLE."""
        self.server = start_model_server(
            self.config, grpc_port=self.server.grpc_port, rest_port=self.server.rest_port
        )
        return time.monotonic()


@pytest.fixture(scope="module")
def standin(tiny_models_config):
    try:
        holder = Standin(tiny_models_config, start_model_server(tiny_models_config))
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    yield holder
    with contextlib.suppress(ProcessLookupError):
        os.kill(holder.server.process.pid, signal.SIGCONT)
    holder.server.stop()
    with contextlib.suppress(OSError):
        holder.server.log_path.unlink()


@pytest.fixture(scope="module")
def gateway(standin):
    target = standin.server.target
    with running_gateway(target, CT_GRPC_DEADLINE_S=str(DEADLINE_S)) as gw:
        yield gw


# ----------------------------------------------------------------------------- tests


def test_model_server_killed_and_restarted_under_load(standin, gateway) -> None:
    with Load(gateway.port, load_images()) as load:
        started = time.monotonic()
        assert load.wait_for(lambda outs: answered(outs, 200, started) > 0, WAIT_S), (
            load.snapshot()[:3]
        )

        killed = time.monotonic()
        standin.server.kill()
        not_ready_s = wait_for_status(gateway.url + "/readyz", 503, timeout=DEADLINE_S * 4)
        # keep sending at a dead model server: every client meets it
        load.wait_for(lambda outs: answered(outs, 503, killed) >= 2 * LOAD_THREADS, WAIT_S)
        assert http_status(gateway.url + "/readyz", timeout=CLIENT_TIMEOUT_S) == 503

        # The stand-in opens its gRPC port while still loading (TF Serving only once loaded), so
        # this recovery hardly depends on gRPC's reconnect backoff; the next-but-one test does.
        available = standin.restart()
        recovered = load.first_success_after(available, timeout=3 * RECOVERY_LIMIT_S)
        # keep the load on until every client has had answers after the recovery
        since = recovered or available
        load.wait_for(lambda outs: answered(outs, 200, since) >= 2 * LOAD_THREADS, WAIT_S)
    outcomes = load.snapshot()
    ready_again_s = wait_for_status(gateway.url + "/readyz", 200, timeout=RECOVERY_LIMIT_S)
    figures = report(
        outcomes,
        readyz_503_after_kill=not_ready_s if not_ready_s is not None else -1,
        down_until_available=available - killed,
        recovery_available_to_first_200=(recovered or available - 1) - available,
    )
    print(f"\n[faults] kill/restart under load ({LOAD_THREADS} clients):\n{figures}")

    lost = [o for o in outcomes if o.status is None]
    assert not lost, f"{len(lost)} requests got no answer, e.g. {lost[0]}\n{figures}"
    assert not_ready_s is not None, "/readyz stayed 200 with the model server dead"
    for outcome in outcomes:
        if outcome.status != 200:
            assert_failure_shape(outcome)
    assert any(o.status == 503 for o in outcomes), figures  # the fault did reach clients
    assert recovered is not None, f"no 200 within {3 * RECOVERY_LIMIT_S} s\n{figures}"
    assert recovered - available <= RECOVERY_LIMIT_S, figures
    assert ready_again_s is not None, "/readyz not 200 again after the restart"


def answered(outcomes: list[Outcome], status: int, since: float) -> int:
    """How many of `outcomes` answered `status` after `since` (time.monotonic())."""
    return sum(o.status == status and o.answered_at >= since for o in outcomes)


def test_frozen_model_server_is_504_within_the_deadline(standin, gateway) -> None:
    task, image = load_images()[0]
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=CLIENT_TIMEOUT_S)
    assert wait_for_status(gateway.url + "/readyz", 200, timeout=3 * RECOVERY_LIMIT_S) is not None
    assert post(conn, task, image).status == 200  # model info cached: one Predict per request
    os.kill(standin.server.process.pid, signal.SIGSTOP)  # accepts TCP, never answers
    try:
        frozen = [post(conn, task, image) for _ in range(2)]
    finally:
        os.kill(standin.server.process.pid, signal.SIGCONT)
    print(f"\n[faults] frozen model server: {[(o.status, round(o.latency_s, 3)) for o in frozen]}")
    for outcome in frozen:
        assert outcome.status == 504, outcome
        assert outcome.body["error"]["code"] == "timeout", outcome
        assert DEADLINE_S * 0.9 <= outcome.latency_s <= DEADLINE_S + SLACK_S, outcome
    after = post(conn, task, image)
    conn.close()
    assert after.status == 200, after


def test_client_reconnects_quickly_after_the_server_returns(monkeypatch) -> None:
    """gRPC's reconnect backoff grows while a server is down; the client must not wait it out,
    nor open a channel for every failed call."""
    opened: list[float] = []
    open_channel = grpc.insecure_channel
    monkeypatch.setattr(
        grpc,
        "insecure_channel",
        lambda *a, **k: opened.append(time.monotonic()) or open_channel(*a, **k),
    )
    server = FakeModelServer({"brain-stroke": [FakeModel()]})
    port = server.port
    client = TfsClient(
        Settings(
            models=("brain-stroke",),
            default_task="brain-stroke",
            model_server=f"127.0.0.1:{port}",
            grpc_deadline_s=1.0,
        )
    )
    client.status("brain-stroke")
    server.stop()
    down_until = time.monotonic() + OUTAGE_S
    while time.monotonic() < down_until:
        with contextlib.suppress(ApiError):
            client.status("brain-stroke")
        time.sleep(0.2)
    server = FakeModelServer({"brain-stroke": [FakeModel()]}, port=port)
    back = time.monotonic()
    try:
        while True:
            try:
                client.status("brain-stroke")
                break
            except ApiError:
                if time.monotonic() - back > 2 * RECOVERY_LIMIT_S:
                    raise
                time.sleep(0.1)
        recovery = time.monotonic() - back
    finally:
        client.close()
        server.stop()
    print(
        f"\n[faults] gRPC client recovery after a {OUTAGE_S:.0f} s outage: {recovery:.3f} s,"
        f" {len(opened)} channels opened"
    )
    assert recovery <= 1.5
    assert len(opened) <= OUTAGE_S / RECONNECT_INTERVAL_S + 3  # at most one per interval
    gaps = [b - a for a, b in zip(opened, opened[1:], strict=False)]
    assert min(gaps, default=RECONNECT_INTERVAL_S) >= RECONNECT_INTERVAL_S
