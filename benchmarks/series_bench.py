"""Scan-level figures with the committed models: a 30-slice series and explain through the gateway.

    .venv/bin/python benchmarks/series_bench.py        # starts the stand-in on models.config
    .venv/bin/python benchmarks/series_bench.py --target 127.0.0.1:8500

Prints p50/p95 of `:predict_series` for one scan's slices (multipart and zip, with and without
?explain=top) and of `:explain` for one slice, then the gateway's start time and memory. The slices
come from ../shared/datasets/brain-stroke-ct (a Stroke scan); nothing is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "model-server")]

from gateway_bench import load_average, memory_line, start_times  # noqa: E402

from gateway.client import multipart_body  # noqa: E402
from tests.fixtures import common  # noqa: E402
from tests.fixtures.gateway import GatewayProcess, start_gateway  # noqa: E402

MODELS_CONFIG = REPO / "model-server" / "models.config"


@contextlib.contextmanager
def committed_model_server():
    """The stand-in on models.config, with the image's /models pointing at the committed models."""
    from ct_standin.config import load_models, render_config
    from tests.fixtures.model_server import start_model_server

    with tempfile.TemporaryDirectory(prefix="series-bench-") as tmp:
        config = Path(tmp) / "models.config"
        config.write_text(render_config(MODELS_CONFIG, {"/models": REPO / "model-server/models"}))
        server = start_model_server(config)
        try:
            yield server.target, [m.name for m in load_models(config)]
        finally:
            server.stop()


def scan_files(scan: str, slices: int) -> list[tuple[str, bytes]]:
    folder = common.DATASETS / "brain-stroke-ct" / "Stroke"
    paths = sorted(folder.glob(f"{scan} (*).jpg"))[:slices]
    if not paths:
        sys.exit(f"no slices of scan {scan} in {folder}")
    return [(p.name, p.read_bytes()) for p in paths]


def zipped(files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buf.getvalue()


def timed_posts(gateway: GatewayProcess, path: str, files, n: int) -> list[float]:
    body, content_type = multipart_body("image", files)
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=120)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        conn.request("POST", path, body, {"Content-Type": content_type})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: gateway answered {response.status}")
        times.append(time.perf_counter() - started)
    conn.close()
    return times


def line(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"{name:<52} n={len(ms):<3} p50 {statistics.median(ms):7.1f} ms  p95 {p95:7.1f} ms"


def run(target: str, tasks: list[str], args: argparse.Namespace) -> None:
    task = "brain-stroke"
    files = scan_files(args.scan, args.slices)
    print(f"load average at the start: {load_average()}")
    print(f"series: scan {args.scan}, {len(files)} slices, {sum(len(d) for _, d in files)} bytes")
    health, ready = start_times(target, ",".join(tasks), args.start_runs)
    print(line("gateway start: spawn -> /healthz 200", health))
    print(line("gateway start: spawn -> /readyz 200", ready))
    gateway = start_gateway(target, CT_MODELS=",".join(tasks))
    try:
        series = f"/v1/models/{task}:predict_series"
        timed_posts(gateway, series, files, 2)  # warm-up
        cases = [
            (f"{len(files)}-slice series, multipart", series, files),
            (f"{len(files)}-slice series, one zip", series, [("scan.zip", zipped(files))]),
            (f"{len(files)}-slice series, ?explain=top", series + "?explain=top", files),
            ("explain, one slice", f"/v1/models/{task}:explain", files[:1]),
            ("predict, one slice", f"/v1/models/{task}:predict", files[:1]),
        ]
        for name, path, payload in cases:
            print(line(name, timed_posts(gateway, path, payload, args.requests)))
        print(memory_line("gateway master", gateway.process.pid))
        for pid in gateway.worker_pids():
            print(memory_line(f"gateway worker {pid}", pid))
        print(f"load average at the end: {load_average()}")
    finally:
        gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="a running model server (host:port); default: start one")
    parser.add_argument("--scan", default="58", help="a Stroke scan id of brain-stroke-ct")
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--start-runs", type=int, default=3)
    args = parser.parse_args()
    if args.target:
        run(args.target, ["brain-stroke", "brain-tumor"], args)
        return
    with committed_model_server() as (target, tasks):
        run(target, tasks, args)


if __name__ == "__main__":
    main()
