"""Measure a running gateway's throughput and size the Deployment for a target load.

    python benchmarks/capacity.py --base-url http://127.0.0.1:9696 --task brain-stroke \\
        --concurrency 1,2,4,8 --duration 15 --workers 1 --target-rps 200

Closed-loop load: C client threads each POST one synthetic image at a time (keep-alive
connections) for `duration` seconds. For every C it prints requests/s, error count and latency
percentiles; the best requests/s per gateway worker then gives the replicas an HPA needs for
`--target-rps` at its CPU target (`--utilization`, the HPA's averageUtilization).
Measured on one machine, the load generator, gateway and model server share the CPUs, so the
figures are a lower bound for a pod with dedicated cores.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.parse
from dataclasses import dataclass

from ct_local.bench.load import closed_loop
from ct_local.bench.timing import percentile
from ct_local.smoke.inputs import multipart, synthetic_png  # the smoke test's image and encoder


@dataclass(frozen=True)
class Result:
    concurrency: int
    seconds: float
    ok: int
    errors: dict[str, int]
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


def run_level(
    base_url: str, task: str, concurrency: int, duration: float, image_size: int
) -> Result:
    path = f"{urllib.parse.urlsplit(base_url).path.rstrip('/')}/v1/models/{task}:predict"
    body, content_type = multipart("image", "load.png", synthetic_png(image_size), "image/png")
    tally, seconds = closed_loop(base_url, path, body, content_type, concurrency, duration)
    lat = sorted(tally.latencies)
    return Result(
        concurrency=concurrency,
        seconds=round(seconds, 2),
        ok=len(lat),
        errors=tally.errors,
        rps=round(len(lat) / seconds, 1),
        p50_ms=round(percentile(lat, 0.50) * 1000, 1),
        p95_ms=round(percentile(lat, 0.95) * 1000, 1),
        p99_ms=round(percentile(lat, 0.99) * 1000, 1),
    )


def replicas_for(target_rps: float, rps_per_pod: float, utilization: float) -> int:
    """Pods so that the target load keeps each at `utilization` of its measured capacity."""
    if rps_per_pod <= 0:
        raise ValueError("measured throughput is zero: no capacity to size from")
    return max(1, math.ceil(target_rps / (rps_per_pod * utilization)))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--task", required=True, help="model name, e.g. brain-stroke")
    parser.add_argument("--concurrency", default="1,2,4,8", help="comma list of client threads")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per level")
    parser.add_argument(
        "--image-size", type=int, default=512, help="side of the synthetic PNG (CT slices: 512)"
    )
    parser.add_argument("--workers", type=int, default=1, help="the gateway's CT_WORKERS")
    parser.add_argument("--target-rps", type=float, default=100.0)
    parser.add_argument("--utilization", type=float, default=0.7, help="HPA CPU target, 0..1")
    parser.add_argument("--json", action="store_true", help="print results as JSON lines")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0 < args.utilization <= 1:
        print("--utilization must be in (0, 1]", file=sys.stderr)
        return 2
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    results = []
    for concurrency in levels:
        result = run_level(args.base_url, args.task, concurrency, args.duration, args.image_size)
        results.append(result)
        if args.json:
            print(json.dumps(result.__dict__))
        else:
            print(
                f"concurrency {result.concurrency:3d}: {result.rps:7.1f} req/s  "
                f"p50 {result.p50_ms:6.1f} ms  p95 {result.p95_ms:6.1f} ms  "
                f"p99 {result.p99_ms:6.1f} ms  ok {result.ok}  errors {result.errors or 0}"
            )
    best = max(results, key=lambda r: r.rps)
    if best.ok == 0:
        print(f"no request succeeded: {best.errors}", file=sys.stderr)
        return 1
    per_worker = best.rps / args.workers
    pods = replicas_for(args.target_rps, best.rps, args.utilization)
    print(
        f"capacity: {best.rps:.1f} req/s per pod ({args.workers} worker(s), "
        f"{per_worker:.1f} req/s per worker, at concurrency {best.concurrency}, "
        f"p95 {best.p95_ms} ms); {args.target_rps:g} req/s at {args.utilization:.0%} "
        f"utilisation needs {pods} gateway pod(s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
