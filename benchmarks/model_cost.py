"""The forward pass of every committed model version, side by side (no gateway, no gRPC).

    .venv/bin/python benchmarks/model_cost.py          # make bench-models

serving_default of each SavedModel under model-server/models, on the smoke's sample slice
(docs/samples/) preprocessed as the gateway does, at batch 1 and batch 16 (TF Serving's
max_batch_size), each in a fresh child process: p50/p95 per call and images per second, with the
machine's load average, so a change of backbone shows what it costs to serve.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from ct_contract.smoke_probe import smoke_inputs
from ct_local.bench.direct import bare_forward
from ct_local.paths import MODELS_ROOT

N1, N16 = 60, 12


def versions() -> list[tuple[str, str]]:
    out = []
    for task_dir in sorted(p for p in MODELS_ROOT.iterdir() if p.is_dir()):
        for v in sorted(
            (p for p in task_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        ):
            out.append((f"{task_dir.name}/{v.name}", str(v)))
    return out


def row(name: str, figures: dict) -> str:
    b1, b16 = figures["batch1"], figures["batch16"]
    size = "x".join(str(d) for d in figures["input"])
    return (
        f"| {name} | {size} | {b1['p50_ms']:.1f} | {b1['p95_ms']:.1f} | {b1['images_per_s']:.0f} | "
        f"{b16['p50_ms']:.1f} | {b16['p50_ms'] / 16:.1f} | {b16['images_per_s']:.0f} |"
    )


def main() -> int:
    image = smoke_inputs()[0]
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    heads = ("version", "input", "b1 p50 ms", "b1 p95 ms", "b1 img/s", "b16 p50 ms", "b16 ms/img")
    print("| " + " | ".join((*heads, "b16 img/s")) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for name, path in versions():
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            figures = pool.submit(bare_forward, path, image, N1, N16).result()
        print(row(name, figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
