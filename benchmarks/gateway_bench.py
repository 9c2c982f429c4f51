"""Gateway figures: start time, memory per worker, and latency through the gateway vs direct gRPC.

    .venv/bin/python benchmarks/gateway_bench.py                     # starts its own stand-in
    .venv/bin/python benchmarks/gateway_bench.py --target 127.0.0.1:8500 --models brain-stroke

Without --target it exports the tiny test models to a temp folder and starts the model server
stand-in on them (needs the dev environment: TensorFlow). Every figure is printed; nothing is kept.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ct_local.bench.direct import direct_latencies
from ct_local.bench.gateway_figures import memory_line, start_times, timed_posts
from ct_local.bench.inputs import SAMPLE_IMAGE, multipart
from ct_local.bench.servers import tiny_model_server
from ct_local.bench.timing import percentile, summary_line
from ct_local.gateway import GatewayProcess, start_gateway


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def gateway_latencies(gateway: GatewayProcess, task: str, image: bytes, n: int) -> list[float]:
    body, content_type = multipart(image)
    return timed_posts(gateway, f"/v1/models/{task}:predict", body, content_type, n)


def run(target: str, tasks: list[str], image: bytes, args: argparse.Namespace) -> None:
    models = ",".join(tasks)
    print(f"load average (1, 5, 15 min) at the start: {load_average()}")
    health, ready = start_times(target, models, args.start_runs)
    print(summary_line("start: spawn -> /healthz 200", health))
    print(summary_line("start: spawn -> /readyz 200", ready))
    gateway = start_gateway(target, CT_MODELS=models)
    try:
        task = tasks[0]
        gateway_latencies(gateway, task, image, args.warmup)
        through = gateway_latencies(gateway, task, image, args.requests)
        predict_only, with_pre = direct_latencies(target, task, image, args.requests)
        print(summary_line(f"latency via gateway ({task}, HTTP multipart)", through))
        print(summary_line("latency direct gRPC Predict (preprocessed)", predict_only))
        print(summary_line("latency direct preprocess + gRPC Predict", with_pre))
        overhead = percentile(sorted(through), 0.5) - percentile(sorted(predict_only), 0.5)
        print(f"gateway overhead over direct Predict (p50): {overhead * 1000:.2f} ms")
        print(memory_line("master", gateway.process.pid))
        for pid in gateway.worker_pids():
            print(memory_line(f"worker {pid} (after {args.warmup + args.requests} requests)", pid))
        print(f"load average (1, 5, 15 min) at the end: {load_average()}")
    finally:
        gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="a running model server (host:port); default: start one")
    parser.add_argument("--models", help="with --target: comma-separated served models")
    parser.add_argument("--image", type=Path, default=SAMPLE_IMAGE)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--start-runs", type=int, default=5)
    args = parser.parse_args()
    image = args.image.read_bytes()
    print(f"image: {args.image.name} ({len(image)} bytes)")
    if args.target:
        if not args.models:
            parser.error("--target needs --models")
        run(args.target, args.models.split(","), image, args)
        return
    with tiny_model_server() as (target, tasks):
        run(target, tasks, image, args)


if __name__ == "__main__":
    main()
