"""Scan-level figures with the committed models: a 30-slice series and explain through the gateway.

    .venv/bin/python benchmarks/series_bench.py        # starts the stand-in on models.config
    .venv/bin/python benchmarks/series_bench.py --target 127.0.0.1:8500

Prints p50/p95 of `:predict_series` for one scan's slices (multipart and zip, with and without
?explain=top) and of `:explain` for one slice, then the gateway's start time and memory. The slices
come from ../shared/datasets/brain-stroke-ct (a Stroke scan); nothing is kept.
"""

from __future__ import annotations

import argparse
import os
import sys

from ct_local.bench.gateway_figures import memory_line, start_times, timed_posts
from ct_local.bench.inputs import BenchInputError, scan_files, zipped
from ct_local.bench.servers import committed_model_server
from ct_local.bench.timing import summary_line
from ct_local.gateway import start_gateway
from gateway.client import multipart_body

WIDTH = 52


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(target: str, tasks: list[str], args: argparse.Namespace) -> None:
    task = "brain-stroke"
    files = scan_files(args.scan, args.slices)
    print(f"load average at the start: {load_average()}")
    print(f"series: scan {args.scan}, {len(files)} slices, {sum(len(d) for _, d in files)} bytes")
    health, ready = start_times(target, ",".join(tasks), args.start_runs)
    print(summary_line("gateway start: spawn -> /healthz 200", health, WIDTH))
    print(summary_line("gateway start: spawn -> /readyz 200", ready, WIDTH))
    gateway = start_gateway(target, CT_MODELS=",".join(tasks))
    try:
        series = f"/v1/models/{task}:predict_series"
        timed_posts(gateway, series, *multipart_body("image", files), 2)  # warm-up
        cases = [
            (f"{len(files)}-slice series, multipart", series, files),
            (f"{len(files)}-slice series, one zip", series, [("scan.zip", zipped(files))]),
            (f"{len(files)}-slice series, ?explain=top", series + "?explain=top", files),
            ("explain, one slice", f"/v1/models/{task}:explain", files[:1]),
            ("predict, one slice", f"/v1/models/{task}:predict", files[:1]),
        ]
        for name, path, payload in cases:
            body, content_type = multipart_body("image", payload)
            times = timed_posts(gateway, path, body, content_type, args.requests)
            print(summary_line(name, times, WIDTH))
        print(memory_line("gateway master", gateway.process.pid))
        for pid in gateway.worker_pids():
            print(memory_line(f"gateway worker {pid}", pid))
        print(f"load average at the end: {load_average()}")
    finally:
        gateway.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="a running model server (host:port); default: start one")
    parser.add_argument("--scan", default="58", help="a Stroke scan id of brain-stroke-ct")
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--start-runs", type=int, default=3)
    args = parser.parse_args()
    try:
        if args.target:
            run(args.target, ["brain-stroke", "brain-tumor"], args)
            return 0
        with committed_model_server() as started:
            run(started.server.target, started.tasks, args)
    except BenchInputError as err:
        print(f"series_bench: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
