"""Gateway figures: start time, memory per worker, and latency through the gateway vs direct gRPC.

    .venv/bin/python benchmarks/gateway_bench.py                     # starts its own stand-in
    .venv/bin/python benchmarks/gateway_bench.py --target 127.0.0.1:8500 --models brain-stroke

Without --target it exports the tiny test models to a temp folder and starts the model server
stand-in on them (needs the dev environment: TensorFlow). Every figure is printed; nothing is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "model-server")]

from ct_contract import signatures as mc  # noqa: E402
from ct_contract.preprocess import load_model_input  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.model_registry import ModelRegistry  # noqa: E402
from gateway.tfs_client import TfsClient  # noqa: E402
from tests.fixtures import common  # noqa: E402
from tests.fixtures.gateway import GatewayProcess, http_status, start_gateway  # noqa: E402


@contextlib.contextmanager
def tiny_model_server():
    from tests.fixtures.model_server import start_model_server

    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        root = Path(tmp)
        for task, labels, size, threshold, positive in common.TINY_MODELS:
            common.export_tiny_model(root, task, labels, size, threshold, positive, version=1)
        config = common.write_models_config(
            root / "models.config", root, [t[0] for t in common.TINY_MODELS]
        )
        server = start_model_server(config)
        try:
            yield server.target, [t[0] for t in common.TINY_MODELS]
        finally:
            server.stop()


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


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def gateway_latencies(gateway: GatewayProcess, task: str, image: bytes, n: int) -> list[float]:
    body, content_type = multipart(image)
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        conn.request("POST", f"/v1/models/{task}:predict", body, {"Content-Type": content_type})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"gateway answered {response.status}")
        times.append(time.perf_counter() - started)
    conn.close()
    return times


def direct_latencies(
    target: str, task: str, image: bytes, n: int
) -> tuple[list[float], list[float]]:
    """(Predict alone, decode+preprocess+Predict) straight at the model server over gRPC."""
    settings = Settings(models=(task,), default_task=task, model_server=target)
    client = TfsClient(settings)
    info = ModelRegistry(client, ttl_s=3600).get(task)
    predict_only, with_preprocess = [], []
    for _ in range(n):
        started = time.perf_counter()
        batch = load_model_input(image, info.input_size, info.channels)[None]
        preprocessed = time.perf_counter()
        client.predict(task, {mc.INPUT_KEY: batch}, mc.PREDICT_SIGNATURE)
        done = time.perf_counter()
        with_preprocess.append(done - started)
        predict_only.append(done - preprocessed)
    client.close()
    return predict_only, with_preprocess


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return (
        f"{name:<44} n={len(ms):<4} mean {statistics.fmean(ms):7.2f} ms  "
        f"p50 {statistics.median(ms):7.2f} ms  p95 {p95:7.2f} ms"
    )


def run(target: str, tasks: list[str], image: bytes, args: argparse.Namespace) -> None:
    models = ",".join(tasks)
    print(f"load average (1, 5, 15 min) at the start: {load_average()}")
    health, ready = start_times(target, models, args.start_runs)
    print(summary("start: spawn -> /healthz 200", health))
    print(summary("start: spawn -> /readyz 200", ready))
    gateway = start_gateway(target, CT_MODELS=models)
    try:
        task = tasks[0]
        gateway_latencies(gateway, task, image, args.warmup)
        through = gateway_latencies(gateway, task, image, args.requests)
        predict_only, with_pre = direct_latencies(target, task, image, args.requests)
        print(summary(f"latency via gateway ({task}, HTTP multipart)", through))
        print(summary("latency direct gRPC Predict (preprocessed)", predict_only))
        print(summary("latency direct preprocess + gRPC Predict", with_pre))
        overhead = statistics.median(through) - statistics.median(predict_only)
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
    parser.add_argument("--image", type=Path, default=common.SAMPLES / "brain-stroke_normal.jpg")
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
