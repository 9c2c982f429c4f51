"""`make bench`: one run, side by side, from the bare forward pass to the gateway under load.

    .venv/bin/python benchmarks/bench.py                    # ~3-4 minutes on 2 busy cores
    .venv/bin/python benchmarks/bench.py --out /tmp/bench --duration 5 --record

With the committed brain-stroke model (latest version under model-server/models) and a real
650 px JPEG (../shared/samples/brain-stroke_normal.jpg) it measures, in this order:

1. the bare forward pass: tf.saved_model.load of the version, `serving_default` on the
   preprocessed uint8 input, batch 1 (latency) and batch 16 (images/s); in a child process that
   exits before anything else starts, so TensorFlow's threads and memory do not linger;
2. the model server alone over gRPC (the stand-in, or tensorflow_model_server when on PATH, started
   with run_local.py's flags: --enable_batching and batching.config), Predict on preprocessed input
   at concurrency 1 (latency) and 16 (req/s);
3. the gateway (tests/fixtures/gateway.start_gateway: 2 workers x 4 threads) with a multipart
   upload of the JPEG at concurrency 1, 4, 16 and 32 for a fixed duration each;
4. a 30-slice series (scan 58 of brain-stroke-ct/Stroke) through `:predict_series`;
5. gateway worker RSS/PSS/USS after the load and after the series, and its start time (spawn to
   /healthz 200 and to /readyz 200);
6. the issue's targets as ratios of figures from this same run, met or not met.

Every load generator (gRPC and HTTP) runs in one separate spawned process without TensorFlow:
keep-alive http.client connections, one thread each, closed loop. Its CPU seconds per level are
recorded so one can see it is not the bottleneck. Prints one markdown table (plus the targets) and
writes JSON and markdown to --out (build/bench/latest.{json,md}); --record also writes the markdown
to benchmarks/results/<date>.md. Nothing is asserted: read the figures with their load average
(docs/benchmarks.md).
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
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "model-server"), str(REPO / "benchmarks")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the TF child's C++ log lines

import capacity  # noqa: E402
import gateway_bench  # noqa: E402
import series_bench  # noqa: E402

from ct_contract import signatures as mc  # noqa: E402
from ct_contract.preprocess import load_model_input  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.model_registry import ModelRegistry  # noqa: E402
from gateway.tfs_client import TfsClient  # noqa: E402
from tests.fixtures import common  # noqa: E402
from tests.fixtures.gateway import gateway_env, stalled_uploads, start_gateway  # noqa: E402

TASK = "brain-stroke"
MODELS_ROOT = REPO / "model-server" / "models"
RESULTS = REPO / "benchmarks" / "results"
BATCH = 16  # TF Serving's max_batch_size (batching.config) and the gateway's CT_MAX_BATCH_SIZE
LEVELS = (1, 4, 16, 32)
# The targets.
C1_OVERHEAD_MS = 5.0  # gateway p50 at concurrency 1 <= bare batch-1 p50 + 5 ms
STALLED = 100  # slow-loris uploads held open during one concurrency-16 level
C16_RATIO = 0.9  # gateway req/s at concurrency 16 >= 0.9 x bare batch-16 images/s, 0 errors
RSS_LIMIT_MB = 120.0  # gateway worker RSS <= 120 MB (10^6 bytes)
MIB = 1024 * 1024


# ----------------------------------------------------------------------------- figures


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def stats(seconds: list[float]) -> dict:
    """n, p50/p95/p99 in ms, by capacity.percentile (the same rule for every row)."""
    ms = sorted(s * 1000 for s in seconds)
    out = {"n": len(ms)}
    for name, q in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        out[name] = round(capacity.percentile(ms, q), 2) if ms else None
    return out


def latest_version(task: str) -> Path:
    versions = [p for p in (MODELS_ROOT / task).iterdir() if p.name.isdigit() and p.is_dir()]
    if not versions:
        sys.exit(f"no model version under {MODELS_ROOT / task}")
    return max(versions, key=lambda p: int(p.name))


# ----------------------------------------------------------------------------- child: bare TF


def bare_forward(version_dir: str, image: bytes, n1: int, n16: int) -> dict:
    """serving_default of the SavedModel on the preprocessed input, in this (child) process."""
    import numpy as np
    import tensorflow as tf

    loaded = tf.saved_model.load(version_dir)
    serve = loaded.signatures[mc.PREDICT_SIGNATURE]
    spec = serve.structured_input_signature[1][mc.INPUT_KEY]
    size, channels = int(spec.shape[1]), int(spec.shape[3])
    one = load_model_input(image, size, channels)[None]
    inputs = {1: tf.constant(one), BATCH: tf.constant(np.repeat(one, BATCH, axis=0))}

    def timed(batch: int, n: int) -> tuple[list[float], float]:
        for _ in range(5):  # warm-up: tracing, first allocations
            serve(**{mc.INPUT_KEY: inputs[batch]})[mc.PROBABILITIES_KEY].numpy()
        times = []
        started = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            serve(**{mc.INPUT_KEY: inputs[batch]})[mc.PROBABILITIES_KEY].numpy()
            times.append(time.perf_counter() - t0)
        return times, time.perf_counter() - started

    b1, b1_total = timed(1, n1)
    b1_load = load()
    b16, b16_total = timed(BATCH, n16)
    return {
        "tensorflow": tf.__version__,
        "input": [size, size, channels],
        "batch1": {**stats(b1), "images_per_s": round(n1 / b1_total, 1), "load": b1_load},
        "batch16": {
            **stats(b16),
            "batch": BATCH,
            "images_per_s": round(n16 * BATCH / b16_total, 1),
            "load": load(),
        },
    }


# ----------------------------------------------------------------------------- child: load


def grpc_figures(target: str, image: bytes, n1: int, concurrency: int, duration: float) -> dict:
    """Predict on preprocessed input straight at the model server: sequential, then C threads
    sharing one channel (as one gateway process does) for `duration` seconds."""
    cpu = time.process_time()
    predict_only, _ = gateway_bench.direct_latencies(target, TASK, image, n1)
    c1 = {**stats(predict_only), "load": load()}
    client = TfsClient(Settings(models=(TASK,), default_task=TASK, model_server=target))
    info = ModelRegistry(client, ttl_s=3600).get(TASK)
    batch = load_model_input(image, info.input_size, info.channels)[None]
    tally = capacity.Tally()
    stop_at = time.monotonic() + duration

    def loop() -> None:
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                client.predict(TASK, {mc.INPUT_KEY: batch}, mc.PREDICT_SIGNATURE)
            except Exception as err:  # noqa: BLE001 - counted, the run goes on
                tally.error(type(err).__name__)
                continue
            tally.ok(time.perf_counter() - t0)

    started = time.monotonic()
    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    client.close()
    cn = {
        **stats(tally.latencies),
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "req_per_s": round(len(tally.latencies) / seconds, 1),
        "errors": tally.errors,
        "load": load(),
    }
    c1["req_per_s"] = round(len(predict_only) / sum(predict_only), 1)
    return {"c1": c1, f"c{concurrency}": cn, "client_cpu_s": round(time.process_time() - cpu, 2)}


def http_level(port: int, path: str, body: bytes, content_type: str, c: int, secs: float) -> dict:
    """C closed-loop keep-alive clients (capacity.client_loop) for `secs` seconds."""
    cpu = time.process_time()
    url = urllib.parse.urlsplit(f"http://127.0.0.1:{port}")
    tally = capacity.Tally()
    started = time.monotonic()
    args = (url, path, body, content_type, started + secs, tally)
    threads = [threading.Thread(target=capacity.client_loop, args=args) for _ in range(c)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    return {
        **stats(tally.latencies),
        "concurrency": c,
        "seconds": round(seconds, 2),
        "req_per_s": round(len(tally.latencies) / seconds, 1),
        "errors": tally.errors,
        "client_cpu_s": round(time.process_time() - cpu, 2),
        "load": load(),
    }


# ----------------------------------------------------------------------------- servers


@contextmanager
def model_server():
    """The committed models (models.config rendered like series_bench.committed_model_server),
    started with run_local.py's own command: the stand-in unless tensorflow_model_server is on
    PATH, --enable_batching with batching.config either way."""
    import run_local

    from ct_standin.config import load_models, render_config
    from tests.fixtures.model_server import start_model_server

    grpc_port, rest_port = common.free_port(), common.free_port()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        config = Path(tmp) / "models.config"
        config.write_text(render_config(series_bench.MODELS_CONFIG, {"/models": MODELS_ROOT}))
        options = run_local.parse_args([f"--grpc-port={grpc_port}", f"--rest-port={rest_port}"])
        command = run_local.build_command(options, config)
        started = time.monotonic()
        server = start_model_server(config, grpc_port, rest_port, command=command)
        try:
            yield server, [m.name for m in load_models(config)], command, time.monotonic() - started
        finally:
            server.stop()


def gateway_memory(gateway) -> dict:
    return {
        "master": gateway_bench.memory_mib(gateway.process.pid),
        "workers": {str(pid): gateway_bench.memory_mib(pid) for pid in gateway.worker_pids()},
        "load": load(),
    }


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


# ----------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict:
    image = args.image.read_bytes()
    version = latest_version(TASK)
    spawn = multiprocessing.get_context("spawn")
    out: dict = {
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
    log(f"load average {out['load_start']}; model {version}; image {args.image} ({len(image)} B)")

    log("1/5 bare forward pass (child process)")
    with ProcessPoolExecutor(1, mp_context=spawn) as child:
        out["bare"] = child.submit(
            bare_forward, str(version), image, args.bare_requests, args.bare_batches
        ).result()

    log("2/5 model server alone over gRPC")
    with model_server() as (server, tasks, command, ready_s):
        out["model_server"] = {
            "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command)),
            "models": tasks,
            "start_to_available_s": round(ready_s, 1),
        }
        models = ",".join(tasks)
        with ProcessPoolExecutor(1, mp_context=spawn) as client:
            out["grpc"] = client.submit(
                grpc_figures, server.target, image, args.grpc_requests, 16, args.grpc_duration
            ).result()

            log("3/5 gateway start time")
            health, ready = gateway_bench.start_times(server.target, models, args.start_runs)
            out["start"] = {
                "healthz": {**stats(health), "max_ms": round(max(health) * 1000, 1)},
                "readyz": {**stats(ready), "max_ms": round(max(ready) * 1000, 1)},
                "load": load(),
            }

            log("4/5 gateway under load")
            gateway = start_gateway(server.target, CT_MODELS=models)
            try:
                env = gateway_env(server.target)  # what start_gateway runs it with
                out["gateway_config"] = {"workers": env["CT_WORKERS"], "threads": env["CT_THREADS"]}
                body, content_type = gateway_bench.multipart(image)
                path = f"/v1/models/{TASK}:predict"
                out["model"]["served_version"] = served_version(gateway.port, body, content_type)
                warm = (gateway.port, path, body, content_type, 4, args.warmup)
                client.submit(http_level, *warm).result()
                out["gateway"] = {}
                for c in LEVELS:
                    level = (gateway.port, path, body, content_type, c, args.duration)
                    out["gateway"][f"c{c}"] = result = client.submit(http_level, *level).result()
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

                log("5/5 30-slice series")
                files = series_bench.scan_files(args.scan, args.slices)
                series = f"/v1/models/{TASK}:predict_series"
                series_bench.timed_posts(gateway, series, files, 2)  # warm-up
                times = series_bench.timed_posts(gateway, series, files, args.series_requests)
                out["series"] = {
                    **stats(times),
                    "scan": args.scan,
                    "slices": len(files),
                    "bytes": sum(len(d) for _, d in files),
                    "slices_per_s": round(len(files) * len(times) / sum(times), 1),
                    "load": load(),
                }
                out["memory_after_series"] = gateway_memory(gateway)
            finally:
                gateway.stop()
    out["load_end"] = load()
    out["targets"] = targets(out)
    return out


def targets(out: dict) -> list[dict]:
    bare1 = out["bare"]["batch1"]["p50_ms"]
    bare16 = out["bare"]["batch16"]["images_per_s"]
    c1, c16 = out["gateway"]["c1"], out["gateway"]["c16"]
    worker_mib = max(
        m["rss"]
        for snapshot in ("memory_after_load", "memory_after_series")
        for m in out[snapshot]["workers"].values()
    )
    worker_mb = worker_mib * MIB / 1e6
    c16_errors = sum(c16["errors"].values())
    return [
        {
            "target": "gateway p50 at concurrency 1 within +5 ms of the bare batch-1 p50",
            "measured": f"{c1['p50_ms']:.1f} ms vs {bare1:.1f} ms: {c1['p50_ms'] - bare1:+.1f} ms",
            "ratio": round(c1["p50_ms"] / bare1, 2),
            "limit": f"<= +{C1_OVERHEAD_MS:g} ms",
            "met": c1["p50_ms"] - bare1 <= C1_OVERHEAD_MS,
        },
        {
            "target": "gateway req/s at concurrency 16 >= 0.9 x bare batch-16 images/s, 0 errors",
            "measured": f"{c16['req_per_s']:.1f} req/s vs {bare16:.1f} images/s, "
            f"{c16_errors} errors",
            "ratio": round(c16["req_per_s"] / bare16, 3),
            "limit": f">= {C16_RATIO}x and 0 errors",
            "met": c16["req_per_s"] >= C16_RATIO * bare16 and c16_errors == 0,
        },
        {
            "target": "gateway worker RSS <= 120 MB (largest worker, after load and series)",
            "measured": f"{worker_mb:.1f} MB ({worker_mib:.1f} MiB)",
            "ratio": round(worker_mb / RSS_LIMIT_MB, 2),
            "limit": f"<= {RSS_LIMIT_MB:g} MB",
            "met": worker_mb <= RSS_LIMIT_MB,
        },
    ]


# ----------------------------------------------------------------------------- output


def fmt(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def errors_text(errors: dict | None) -> str:
    if errors is None:
        return "–"
    return str(sum(errors.values())) + (f" ({', '.join(errors)})" if errors else "")


def markdown(out: dict) -> str:
    rows = []

    def row(name, fig, rate, errors=None, load_avg=None):
        load_text = fmt((load_avg or fig.get("load") or [None])[0], 2)
        rows.append(
            f"| {name} | {fig.get('n', '–')} | {fmt(fig.get('p50_ms'))} | {fmt(fig.get('p95_ms'))}"
            f" | {fmt(fig.get('p99_ms'))} | {rate} | {errors_text(errors)} | {load_text} |"
        )

    bare = out["bare"]
    row("bare forward pass, batch 1", bare["batch1"], f"{bare['batch1']['images_per_s']} img/s")
    row(
        f"bare forward pass, batch {BATCH} (per call)",
        bare["batch16"],
        f"{bare['batch16']['images_per_s']} img/s",
    )
    grpc = out["grpc"]
    row("model server gRPC Predict, concurrency 1", grpc["c1"], f"{grpc['c1']['req_per_s']} req/s")
    row(
        "model server gRPC Predict, concurrency 16",
        grpc["c16"],
        f"{grpc['c16']['req_per_s']} req/s",
        grpc["c16"]["errors"],
    )
    for c in LEVELS:
        fig = out["gateway"][f"c{c}"]
        row(
            f"gateway multipart JPEG, concurrency {c}",
            fig,
            f"{fig['req_per_s']} req/s",
            fig["errors"],
        )
    if "c16_stalled" in out["gateway"]:
        fig = out["gateway"]["c16_stalled"]
        row(
            f"gateway multipart JPEG, concurrency 16, {STALLED} stalled uploads open",
            fig,
            f"{fig['req_per_s']} req/s",
            fig["errors"],
        )
    series = out["series"]
    row(
        f"{series['slices']}-slice series (scan {series['scan']}), multipart",
        series,
        f"{series['slices_per_s']} slices/s",
        {},
    )
    start = out["start"]
    for probe in ("healthz", "readyz"):
        fig = start[probe]
        row(
            f"gateway start: spawn -> /{probe} 200",
            fig,
            f"max {fig['max_ms']:.0f} ms",
            load_avg=start["load"],
        )
    for snapshot, when in (("memory_after_load", "load"), ("memory_after_series", "series")):
        mem = out[snapshot]
        worst = max(mem["workers"].values(), key=lambda m: m["rss"])
        rows.append(
            f"| gateway worker memory after the {when} (largest of {len(mem['workers'])}) | – | – "
            f"| – | – | RSS {worst['rss']:.1f} MiB, PSS {worst.get('pss', 0):.1f} MiB, "
            f"USS {worst.get('uss', 0):.1f} MiB | – | {fmt(mem['load'][0], 2)} |"
        )
    lines = [
        f"### make bench, {out['started']} (commit {out['commit']})",
        "",
        f"{out['host']['cpus']} CPUs shared with other work; load average (1/5/15 min) "
        f"{' '.join(map(str, out['load_start']))} at the start, "
        f"{' '.join(map(str, out['load_end']))} at the end. Model {out['model']['task']} "
        f"v{out['model']['version']} ({'x'.join(map(str, bare['input']))} uint8, TensorFlow "
        f"{bare['tensorflow']}), image {out['image']['name']} ({out['image']['bytes']} B). "
        f"Model server: `{out['model_server']['command'].split(' --')[0]}` with "
        f"--enable_batching (batching.config). Gateway: {out['gateway_config']['workers']} workers"
        f" x {out['gateway_config']['threads']} threads. Load generator: {out['client']}; "
        f"{out['gateway']['c1']['seconds']:.0f} s per concurrency level, the client used at most "
        f"{client_share(out):.0%} of one CPU.",
        "",
        "| measurement | n | p50 ms | p95 ms | p99 ms | rate / value | errors | load 1 min |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: |",
        *rows,
        "",
        "| target (same run) | measured | ratio | limit | |",
        "| --- | --- | ---: | --- | --- |",
        *(
            f"| {t['target']} | {t['measured']} | {t['ratio']} | {t['limit']} | "
            f"{'met' if t['met'] else '**not met**'} |"
            for t in out["targets"]
        ),
        "",
    ]
    return "\n".join(lines)


def client_share(out: dict) -> float:
    """The load generator's busiest level: its CPU seconds over the level's wall seconds."""
    return max(f["client_cpu_s"] / f["seconds"] for f in out["gateway"].values())


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench", help="folder")
    parser.add_argument("--record", action="store_true", help="also benchmarks/results/<date>.md")
    parser.add_argument("--image", type=Path, default=common.SAMPLES / "brain-stroke_normal.jpg")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    out = run(args)
    out["wall_s"] = round(time.monotonic() - started, 1)
    text = markdown(out)
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
    log(f"{out['wall_s']:.0f} s; wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
