"""Faults: the model server killed and restarted under load, frozen, and the gateway stopped while
requests are in flight. Real processes on loopback: `python -m gateway` (gunicorn) in front of its
own stand-in (tests/fixtures/model_server.py), which these tests kill, restart and freeze.

What must hold: every request gets an answer (no client timeout, no reset), every failure is a JSON
503 (with Retry-After) or 504 within the gRPC deadline plus a little slack, readiness follows the
model server, and predictions resume within RECOVERY_LIMIT_S of the model server being AVAILABLE.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import runpy
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest
from PIL import Image

from gateway.config import Settings
from gateway.errors import ApiError
from gateway.tfs_client import RECONNECT_INTERVAL_S, TfsClient
from tests.fixtures.common import REPO, SAMPLES, TINY_MODELS
from tests.fixtures.gateway import (
    FakeModel,
    FakeModelServer,
    http_status,
    is_serving_call,
    running_gateway,
    start_gateway,
)
from tests.fixtures.model_server import ModelServer, start_model_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEADLINE_S = 2.0  # CT_GRPC_DEADLINE_S of the gateways here
SLACK_S = 1.5  # scheduling on a busy 2-core machine
# Longer than any answer the gateway may give (three model-server calls): a timeout is a hang.
CLIENT_TIMEOUT_S = 3 * DEADLINE_S + 4
RECOVERY_LIMIT_S = 5.0
LOAD_THREADS = 8
PACE_S = 0.05  # pause between one client's requests: bounded load, the restart still gets CPU
FAILURE_STATUSES = {503, 504}
# Long enough for a 200 ms -> 5 s reconnect backoff to reach its cap: recovery could take 5 s.
OUTAGE_S = 10.0
DRAIN_DELAY_S = 2.5  # the slow model server's answer time while the gateway drains
TASKS = [t[0] for t in TINY_MODELS]


# ----------------------------------------------------------------------------- images, requests


def load_images() -> list[tuple[str, bytes]]:
    """(task, image bytes): the shared sample scans, else one generated PNG per task."""
    if SAMPLES.is_dir():
        files = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
        return [(TASKS[i % len(TASKS)], p.read_bytes()) for i, p in enumerate(files)]
    pixels = np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return [(task, buffer.getvalue()) for task in TASKS]


def predict_body(image: bytes) -> bytes:
    return json.dumps({"image_b64": base64.b64encode(image).decode()}).encode()


@dataclass
class Outcome:
    started: float  # time.monotonic()
    latency_s: float
    status: int | None  # None: no HTTP answer (timeout, reset, refused)
    body: dict | None = None
    retry_after: str | None = None
    error: str = ""

    @property
    def answered_at(self) -> float:
        return self.started + self.latency_s


def post(conn: http.client.HTTPConnection, task: str, image: bytes) -> Outcome:
    """One predict request on `conn`; any transport failure becomes an Outcome with no status."""
    started = time.monotonic()
    try:
        conn.request(
            "POST",
            f"/v1/models/{task}:predict",
            predict_body(image),
            {"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        return Outcome(started, time.monotonic() - started, None, error=repr(exc))
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return Outcome(
        started,
        time.monotonic() - started,
        response.status,
        body,
        response.getheader("Retry-After"),
    )


@dataclass
class Load:
    """LOAD_THREADS clients, each on its own keep-alive connection, until stopped."""

    port: int
    images: list[tuple[str, bytes]]
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True)
            for i in range(LOAD_THREADS)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT_S + 5)

    def _client(self, index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT_S)
        turn = index
        while not self._stop.is_set():
            task, image = self.images[turn % len(self.images)]
            outcome = post(conn, task, image)
            with self._lock:
                self.outcomes.append(outcome)
            turn += 1
            time.sleep(PACE_S)
        conn.close()

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def first_success_after(self, moment: float, timeout: float) -> float | None:
        """When the first 200 answered after `moment` arrived, waiting up to `timeout`."""
        until = time.monotonic() + timeout
        while True:
            ok = [o.answered_at for o in self.snapshot() if o.status == 200]
            after = [t for t in ok if t >= moment]
            if after:
                return min(after)
            if time.monotonic() > until:
                return None
            time.sleep(0.05)


def assert_failure_shape(outcome: Outcome) -> None:
    assert outcome.status in FAILURE_STATUSES, outcome
    assert isinstance(outcome.body, dict) and set(outcome.body) >= {"error"}, outcome
    assert set(outcome.body["error"]) == {"code", "message"}, outcome
    if outcome.status == 503:
        assert outcome.retry_after is not None and int(outcome.retry_after) >= 1, outcome
    assert outcome.latency_s <= DEADLINE_S + SLACK_S, outcome


def report(outcomes: list[Outcome], **figures: float) -> str:
    statuses = Counter(o.status for o in outcomes)
    failures = [o.latency_s for o in outcomes if o.status != 200]
    lines = [
        f"requests sent {len(outcomes)}, answered {sum(statuses[s] for s in statuses if s)}, "
        f"lost {statuses[None]}",
        f"status histogram {dict(sorted(statuses.items(), key=lambda kv: str(kv[0])))}",
        f"max failure latency {max(failures, default=0.0):.3f} s",
        *(f"{name.replace('_', ' ')} {value:.3f} s" for name, value in figures.items()),
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- fixtures


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


def wait_for_status(url: str, status: int, timeout: float) -> float | None:
    """Seconds until GET url answers `status`, or None."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if http_status(url, timeout=CLIENT_TIMEOUT_S) == status:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


# ----------------------------------------------------------------------------- tests


def test_model_server_killed_and_restarted_under_load(standin, gateway) -> None:
    with Load(gateway.port, load_images()) as load:
        time.sleep(1.5)
        assert any(o.status == 200 for o in load.snapshot()), load.snapshot()[:3]

        killed = time.monotonic()
        standin.server.kill()
        not_ready_s = wait_for_status(gateway.url + "/readyz", 503, timeout=DEADLINE_S * 4)
        time.sleep(3.0)  # keep sending at a dead model server
        assert http_status(gateway.url + "/readyz", timeout=CLIENT_TIMEOUT_S) == 503

        # The stand-in opens its gRPC port while still loading (TF Serving only once loaded), so
        # this recovery hardly depends on gRPC's reconnect backoff; the next-but-one test does.
        available = standin.restart()
        recovered = load.first_success_after(available, timeout=3 * RECOVERY_LIMIT_S)
        time.sleep(1.0)
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


def post_once(port: int, image: bytes) -> Outcome:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_S)
    try:
        return post(conn, "brain-stroke", image)
    finally:
        conn.close()


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
