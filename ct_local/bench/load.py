"""Closed-loop HTTP load: C threads, one keep-alive connection each, for a fixed duration."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse

from ct_local.bench.timing import Tally, latency_stats, load


def client_loop(
    url: urllib.parse.SplitResult,
    path: str,
    body: bytes,
    content_type: str,
    stop_at: float,
    tally: Tally,
) -> None:
    """POST `body` to `path` one request at a time until `stop_at` (time.monotonic)."""
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
    headers = {"Content-Type": content_type}
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as err:
            tally.error(type(err).__name__)
            conn.close()
            conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
            continue
        if response.status == 200:
            tally.ok(time.perf_counter() - started)
        else:
            tally.error(f"HTTP {response.status}")
    conn.close()


def closed_loop(
    base_url: str, path: str, body: bytes, content_type: str, concurrency: int, seconds: float
) -> tuple[Tally, float]:
    """`concurrency` client_loop threads for `seconds`; returns the tally and the wall seconds."""
    url = urllib.parse.urlsplit(base_url)
    tally = Tally()
    started = time.monotonic()
    args = (url, path, body, content_type, started + seconds, tally)
    threads = [threading.Thread(target=client_loop, args=args) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally, time.monotonic() - started


def http_level(port: int, path: str, body: bytes, content_type: str, c: int, secs: float) -> dict:
    """One concurrency level against 127.0.0.1:`port`, with the client's own CPU seconds."""
    cpu = time.process_time()
    tally, seconds = closed_loop(f"http://127.0.0.1:{port}", path, body, content_type, c, secs)
    return {
        **latency_stats(tally.latencies),
        "concurrency": c,
        "seconds": round(seconds, 2),
        "req_per_s": round(len(tally.latencies) / seconds, 1),
        "errors": tally.errors,
        "client_cpu_s": round(time.process_time() - cpu, 2),
        "load": load(),
    }
