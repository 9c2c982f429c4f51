"""The fault tests' load generator and what they check on every answer (test-only helpers).

`Load` runs LOAD_THREADS clients, each on its own keep-alive connection, posting the sample scans
until stopped; every request becomes an `Outcome` (status None: no HTTP answer at all). Tests wait
on conditions over the outcomes (`Load.wait_for`), never on wall-clock sleeps.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from tests.fixtures.common import SAMPLES, TINY_MODELS
from tests.fixtures.gateway import http_status

DEADLINE_S = 2.0  # CT_GRPC_DEADLINE_S of the gateways here
SLACK_S = 1.5  # scheduling on a busy 2-core machine
# Longer than any answer the gateway may give (three model-server calls): a timeout is a hang.
CLIENT_TIMEOUT_S = 3 * DEADLINE_S + 4
LOAD_THREADS = 8
PACE_S = 0.05  # pause between one client's requests: bounded load, the restart still gets CPU
FAILURE_STATUSES = {503, 504}
TASKS = [t[0] for t in TINY_MODELS]


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

    def wait_for(self, condition: Callable[[list[Outcome]], bool], timeout: float) -> bool:
        """Whether the outcomes so far meet `condition` within `timeout` seconds (polled)."""
        until = time.monotonic() + timeout
        while not condition(self.snapshot()):
            if time.monotonic() > until:
                return False
            time.sleep(0.05)
        return True

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


def wait_for_status(url: str, status: int, timeout: float) -> float | None:
    """Seconds until GET url answers `status`, or None."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if http_status(url, timeout=CLIENT_TIMEOUT_S) == status:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def post_once(port: int, image: bytes) -> Outcome:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_S)
    try:
        return post(conn, "brain-stroke", image)
    finally:
        conn.close()
