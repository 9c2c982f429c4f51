"""`make bench`: one run, side by side, from the bare forward pass to the gateway under load.

The steps and what they measure are described in benchmarks/bench.py (the script's --help).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ct_local.bench import direct, report
from ct_local.bench.cpu import tree_cpu_s
from ct_local.bench.gateway_figures import gateway_memory, start_times, timed_posts
from ct_local.bench.inputs import SAMPLE_IMAGE, BenchInputError, multipart, scan_files
from ct_local.bench.load import http_level
from ct_local.bench.report import BATCH, LEVELS, STALLED, TASK
from ct_local.bench.servers import committed_model_server
from ct_local.bench.timing import latency_stats, load
from ct_local.gateway import GatewayProcess, gateway_env, stalled_uploads, start_gateway
from ct_local.paths import MODELS_ROOT, REPO
from gateway.client import multipart_body

RESULTS = REPO / "benchmarks" / "results"


def latest_version(task: str) -> Path:
    versions = [p for p in (MODELS_ROOT / task).iterdir() if p.name.isdigit() and p.is_dir()]
    if not versions:
        raise BenchInputError(f"no model version under {MODELS_ROOT / task}")
    return max(versions, key=lambda p: int(p.name))


def served_version(port: int, body: bytes, content_type: str) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", f"/v1/models/{TASK}:predict", body, {"Content-Type": content_type})
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"gateway answered {response.status}: {answer}")
    return int(answer["version"])


def header(args: argparse.Namespace, image: bytes, version: Path) -> dict:
    return {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_start": load(),
        "model": {
            "task": TASK,
            "version": int(version.name),
            "path": str(version.relative_to(REPO)),
        },
        "image": {"name": args.image.name, "bytes": len(image)},
        "client": "one spawned process (no TensorFlow), a thread and a keep-alive connection each",
    }


def gateway_levels(
    out: dict, gateway: GatewayProcess, client, image: bytes, args, server_pid: int
) -> None:
    """Warm-up, every concurrency level (with the model server's CPU per request), then
    concurrency 16 with stalled uploads held open."""
    body, content_type = multipart(image)
    path = f"/v1/models/{TASK}:predict"
    out["model"]["served_version"] = served_version(gateway.port, body, content_type)
    client.submit(http_level, gateway.port, path, body, content_type, 4, args.warmup).result()
    out["gateway"] = {}
    for c in LEVELS:
        level = (gateway.port, path, body, content_type, c, args.duration)
        cpu = tree_cpu_s(server_pid)
        out["gateway"][f"c{c}"] = result = client.submit(http_level, *level).result()
        served = result["req_per_s"] * result["seconds"]
        used_ms = (tree_cpu_s(server_pid) - cpu) * 1000
        result["model_server_cpu_ms_per_request"] = round(used_ms / served, 2) if served else None
        log(
            f"  concurrency {c}: {result['req_per_s']} req/s, p50 {result['p50_ms']}"
            f" ms, errors {result['errors'] or 0}, load {result['load'][0]}"
        )
    out["memory_after_load"] = gateway_memory(gateway)
    log(f"  concurrency 16 with {STALLED} stalled uploads held open")
    stalled = stalled_uploads(gateway.port, STALLED)
    try:
        level = (gateway.port, path, body, content_type, 16, args.duration)
        out["gateway"]["c16_stalled"] = client.submit(http_level, *level).result()
    finally:
        for sock in stalled:
            sock.close()


def series_figures(out: dict, gateway: GatewayProcess, args: argparse.Namespace) -> None:
    files = scan_files(args.scan, args.slices)
    body, content_type = multipart_body("image", files)
    series = f"/v1/models/{TASK}:predict_series"
    timed_posts(gateway, series, body, content_type, 2)  # warm-up
    times = timed_posts(gateway, series, body, content_type, args.series_requests)
    out["series"] = {
        **latency_stats(times),
        "scan": args.scan,
        "slices": len(files),
        "bytes": sum(len(d) for _, d in files),
        "slices_per_s": round(len(files) * len(times) / sum(times), 1),
        "load": load(),
    }
    out["memory_after_series"] = gateway_memory(gateway)


def run(args: argparse.Namespace) -> dict:
    image = args.image.read_bytes()
    version = latest_version(TASK)
    spawn = multiprocessing.get_context("spawn")
    out = header(args, image, version)
    log(f"load average {out['load_start']}; model {version}; image {args.image} ({len(image)} B)")

    log("1/5 bare forward pass (child process)")
    with ProcessPoolExecutor(1, mp_context=spawn) as child:
        out["bare"] = child.submit(
            direct.bare_forward, str(version), image, args.bare_requests, args.bare_batches
        ).result()

    log("2/5 model server alone over gRPC")
    with committed_model_server(launcher_flags=True) as started:
        server, command = started.server, started.command or []
        out["model_server"] = {
            "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command)),
            "models": started.tasks,
            "start_to_available_s": round(started.ready_s, 1),
        }
        models = ",".join(started.tasks)
        with ProcessPoolExecutor(1, mp_context=spawn) as client:
            out["grpc"] = client.submit(
                direct.grpc_figures,
                server.target,
                image,
                args.grpc_requests,
                16,
                args.grpc_duration,
            ).result()

            log("3/5 gateway start time")
            health, ready = start_times(server.target, models, args.start_runs)
            out["start"] = {
                "healthz": {**latency_stats(health), "max_ms": round(max(health) * 1000, 1)},
                "readyz": {**latency_stats(ready), "max_ms": round(max(ready) * 1000, 1)},
                "load": load(),
            }

            log("4/5 gateway under load")
            gateway = start_gateway(server.target, CT_MODELS=models)
            try:
                env = gateway_env(server.target)  # what start_gateway runs it with
                out["gateway_config"] = {"workers": env["CT_WORKERS"], "threads": env["CT_THREADS"]}
                gateway_levels(out, gateway, client, image, args, server.process.pid)
                log("5/5 30-slice series")
                series_figures(out, gateway, args)
            finally:
                gateway.stop()
    out["load_end"] = load()
    out["targets"] = report.targets(out)
    return out


def git_commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (sha or "unknown") + ("+dirty" if dirty else "")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None, description: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description or __doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench", help="folder")
    parser.add_argument("--record", action="store_true", help="also benchmarks/results/<date>.md")
    parser.add_argument("--image", type=Path, default=SAMPLE_IMAGE)
    parser.add_argument("--bare-requests", type=int, default=200, help="batch-1 calls")
    parser.add_argument("--bare-batches", type=int, default=40, help=f"batch-{BATCH} calls")
    parser.add_argument("--grpc-requests", type=int, default=200, help="sequential Predicts")
    parser.add_argument("--grpc-duration", type=float, default=8.0, help="s at concurrency 16")
    parser.add_argument("--duration", type=float, default=10.0, help="s per gateway level")
    parser.add_argument("--warmup", type=float, default=3.0, help="s of gateway warm-up")
    parser.add_argument("--scan", default="58", help="a Stroke scan id of brain-stroke-ct")
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--series-requests", type=int, default=10)
    parser.add_argument("--start-runs", type=int, default=3)
    return parser.parse_args(argv)


def write(out: dict, args: argparse.Namespace) -> list[Path]:
    """latest.json and latest.md in --out; with --record also benchmarks/results/<date>.md."""
    text = report.markdown(out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(out, indent=2) + "\n")
    (args.out / "latest.md").write_text(text)
    written = [args.out / "latest.json", args.out / "latest.md"]
    if args.record:
        RESULTS.mkdir(parents=True, exist_ok=True)
        record = RESULTS / f"{out['started'][:10]}.md"
        record.write_text(text)
        written.append(record)
    print(text)
    return written


def main(argv: list[str] | None = None, description: str | None = None) -> int:
    args = parse_args(argv, description)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the TF child's C++ log lines
    started = time.monotonic()
    try:
        out = run(args)
    except BenchInputError as err:
        print(f"bench: {err}", file=sys.stderr)
        return 1
    out["wall_s"] = round(time.monotonic() - started, 1)
    written = write(out, args)
    log(f"{out['wall_s']:.0f} s; wrote " + ", ".join(str(p) for p in written))
    return 0
