"""Figures of a running gateway: start time, memory per process, sequential request latency."""

from __future__ import annotations

import http.client
import time
from pathlib import Path

from ct_local.bench.timing import load, timed
from ct_local.gateway import GatewayProcess, start_gateway
from ct_local.ports import http_status


def start_times(target: str, models: str, runs: int) -> tuple[list[float], list[float]]:
    """Seconds from spawning `python -m gateway` to /healthz 200 and to /readyz 200."""
    health, ready = [], []
    for _ in range(runs):
        started = time.monotonic()
        gateway = start_gateway(target, wait_for="/healthz", CT_MODELS=models)
        health.append(time.monotonic() - started)
        while http_status(gateway.url + "/readyz") != 200:
            time.sleep(0.01)
        ready.append(time.monotonic() - started)
        gateway.stop()
    return health, ready


def memory_mib(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (private pages) in MiB from /proc/<pid>/smaps_rollup (RSS alone if absent).

    After a fork the workers share the master's pages until they write them: RSS counts shared
    pages in full in every process, PSS divides them among the sharers, USS counts none.
    """
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                fields[name] = int(value.split()[0]) / 1024
    except OSError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return {"rss": int(line.split()[1]) / 1024}
        return {}
    uss = fields.get("Private_Clean", 0.0) + fields.get("Private_Dirty", 0.0)
    return {"rss": fields.get("Rss", 0.0), "pss": fields.get("Pss", 0.0), "uss": uss}


def memory_line(name: str, pid: int) -> str:
    return f"{name:<44} " + "  ".join(
        f"{k.upper()} {v:6.1f} MiB" for k, v in memory_mib(pid).items()
    )


def gateway_memory(gateway: GatewayProcess) -> dict:
    """memory_mib of the master and of every worker, with the load average."""
    return {
        "master": memory_mib(gateway.process.pid),
        "workers": {str(pid): memory_mib(pid) for pid in gateway.worker_pids()},
        "load": load(),
    }


def timed_posts(
    gateway: GatewayProcess, path: str, body: bytes, content_type: str, n: int
) -> list[float]:
    """Seconds each of `n` sequential POSTs on one keep-alive connection took; all must be 200."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=120)

    def post() -> None:
        conn.request("POST", path, body, {"Content-Type": content_type})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: gateway answered {response.status}")

    try:
        return timed(post, n)
    finally:
        conn.close()
