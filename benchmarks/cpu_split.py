"""Where the CPU goes at concurrency 16: gateway workers vs the model server, per request.

    .venv/bin/python benchmarks/cpu_split.py

Starts the model server on the committed models (as `make bench` does) and a gateway, sends the
650 px sample JPEG at concurrency 16 for 10 s, and reads each process's CPU seconds from
/proc/<pid>/stat before and after. Prints CPU milliseconds per request and cores used.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ct_local.bench.inputs import SAMPLE_IMAGE, multipart
from ct_local.bench.load import http_level
from ct_local.bench.servers import committed_model_server
from ct_local.gateway import start_gateway

TICK = os.sysconf("SC_CLK_TCK")
PATH = "/v1/models/brain-stroke:predict"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def main() -> None:
    image = SAMPLE_IMAGE.read_bytes()
    with committed_model_server(launcher_flags=True) as started:
        server = started.server
        gateway = start_gateway(server.target, CT_MODELS=",".join(started.tasks))
        try:
            body, content_type = multipart(image)
            http_level(gateway.port, PATH, body, content_type, 4, 3)  # warm-up
            pids = {"gateway workers": gateway.worker_pids(), "model server": [server.process.pid]}
            before = {name: sum(map(cpu_seconds, group)) for name, group in pids.items()}
            started_at = time.monotonic()
            level = http_level(gateway.port, PATH, body, content_type, 16, 10)
            elapsed = time.monotonic() - started_at
            print(f"concurrency 16: {level['n']} requests in {elapsed:.1f} s, "
                  f"{level['req_per_s']} req/s, load {os.getloadavg()[0]:.2f}")  # fmt: skip
            for name, group in pids.items():
                used = sum(map(cpu_seconds, group)) - before[name]
                print(f"{name:<16} {used / level['n'] * 1000:6.2f} ms CPU per request "
                      f"({used / elapsed:.2f} cores)")  # fmt: skip
        finally:
            gateway.stop()


if __name__ == "__main__":
    main()
