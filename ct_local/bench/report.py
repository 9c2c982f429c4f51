"""What `make bench` measures, the performance targets it compares against, and its output: the
targets as ratios and one markdown table of the run."""

from __future__ import annotations

TASK = "brain-stroke"
BATCH = 16  # TF Serving's max_batch_size (batching.config) and the gateway's CT_MAX_BATCH_SIZE
LEVELS = (1, 4, 16, 32)
STALLED = 100  # slow-loris uploads held open during one concurrency-16 level
C1_OVERHEAD_MS = 5.0  # gateway p50 at concurrency 1 <= bare batch-1 p50 + 5 ms
SERVER_OVERHEAD_MS = 2.0  # model server CPU per request <= the forward pass's per image + 2 ms
C16_RATIO = 0.9  # gateway req/s at concurrency 16 >= 0.9 x bare batch-16 images/s, 0 errors
RSS_LIMIT_MB = 120.0  # gateway worker RSS <= 120 MB (10^6 bytes)
MIB = 1024 * 1024


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
        _server_cpu_target(out),
        {
            "target": "gateway worker RSS <= 120 MB (largest worker, after load and series)",
            "measured": f"{worker_mb:.1f} MB ({worker_mib:.1f} MiB)",
            "ratio": round(worker_mb / RSS_LIMIT_MB, 2),
            "limit": f"<= {RSS_LIMIT_MB:g} MB",
            "met": worker_mb <= RSS_LIMIT_MB,
        },
    ]


def _server_cpu_target(out: dict) -> dict:
    """The model server's CPU per request at concurrency 16 above the bare forward pass's CPU
    per image at batch 16 (both on this machine's cores, one run)."""
    per_request = out["gateway"]["c16"].get("model_server_cpu_ms_per_request")
    forward_ms = out["bare"]["batch16"]["cpu_ms_per_image"]
    over = None if per_request is None else per_request - forward_ms
    return {
        "target": "model server CPU per request at concurrency 16 above the bare batch-16 pass",
        "measured": f"{fmt(per_request)} ms CPU per request vs {forward_ms:.1f} ms CPU per image",
        "ratio": None if over is None else round(over / SERVER_OVERHEAD_MS, 2),
        "limit": f"<= +{SERVER_OVERHEAD_MS:g} ms",
        "met": over is not None and over <= SERVER_OVERHEAD_MS,
    }


def fmt(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def errors_text(errors: dict | None) -> str:
    if errors is None:
        return "–"
    return str(sum(errors.values())) + (f" ({', '.join(errors)})" if errors else "")


def row(name: str, fig: dict, rate: str, errors: dict | None = None, load_avg=None) -> str:
    """One measurement row: n, p50/p95/p99, the rate, errors and the 1-minute load."""
    load_text = fmt((load_avg or fig.get("load") or [None])[0], 2)
    return (
        f"| {name} | {fig.get('n', '–')} | {fmt(fig.get('p50_ms'))} | {fmt(fig.get('p95_ms'))}"
        f" | {fmt(fig.get('p99_ms'))} | {rate} | {errors_text(errors)} | {load_text} |"
    )


def direct_rows(out: dict) -> list[str]:
    """The bare forward pass and the model server over gRPC."""
    bare, grpc = out["bare"], out["grpc"]
    return [
        row(
            "bare forward pass, batch 1", bare["batch1"], f"{bare['batch1']['images_per_s']} img/s"
        ),
        row(
            f"bare forward pass, batch {BATCH} (per call)",
            bare["batch16"],
            f"{bare['batch16']['images_per_s']} img/s",
        ),
        row(
            "model server gRPC Predict, concurrency 1",
            grpc["c1"],
            f"{grpc['c1']['req_per_s']} req/s",
        ),
        row(
            "model server gRPC Predict, concurrency 16",
            grpc["c16"],
            f"{grpc['c16']['req_per_s']} req/s",
            grpc["c16"]["errors"],
        ),
    ]


def gateway_rows(out: dict) -> list[str]:
    """Every concurrency level, the stalled-uploads level and the series."""
    levels = [(f"gateway multipart JPEG, concurrency {c}", out["gateway"][f"c{c}"]) for c in LEVELS]
    if "c16_stalled" in out["gateway"]:
        name = f"gateway multipart JPEG, concurrency 16, {STALLED} stalled uploads open"
        levels.append((name, out["gateway"]["c16_stalled"]))
    rows = [row(name, fig, f"{fig['req_per_s']} req/s", fig["errors"]) for name, fig in levels]
    series = out["series"]
    rows.append(
        row(
            f"{series['slices']}-slice series (scan {series['scan']}), multipart",
            series,
            f"{series['slices_per_s']} slices/s",
            {},
        )
    )
    return rows


def start_and_memory_rows(out: dict) -> list[str]:
    start = out["start"]
    rows = [
        row(
            f"gateway start: spawn -> /{probe} 200",
            start[probe],
            f"max {start[probe]['max_ms']:.0f} ms",
            load_avg=start["load"],
        )
        for probe in ("healthz", "readyz")
    ]
    for snapshot, when in (("memory_after_load", "load"), ("memory_after_series", "series")):
        mem = out[snapshot]
        worst = max(mem["workers"].values(), key=lambda m: m["rss"])
        rows.append(
            f"| gateway worker memory after the {when} (largest of {len(mem['workers'])}) | – | – "
            f"| – | – | RSS {worst['rss']:.1f} MiB, PSS {worst.get('pss', 0):.1f} MiB, "
            f"USS {worst.get('uss', 0):.1f} MiB | – | {fmt(mem['load'][0], 2)} |"
        )
    return rows


def context(out: dict) -> str:
    """The paragraph under the title: machine, load, model, servers and load generator."""
    bare = out["bare"]
    return (
        f"{out['host']['cpus']} CPUs shared with other work; load average (1/5/15 min) "
        f"{' '.join(map(str, out['load_start']))} at the start, "
        f"{' '.join(map(str, out['load_end']))} at the end. Model {out['model']['task']} "
        f"v{out['model']['version']} ({'x'.join(map(str, bare['input']))} uint8, TensorFlow "
        f"{bare['tensorflow']}), image {out['image']['name']} ({out['image']['bytes']} B). "
        f"Model server: `{out['model_server']['command'].split(' --')[0]}` with "
        f"--enable_batching (batching.config). Gateway: {out['gateway_config']['workers']} workers"
        f" x {out['gateway_config']['threads']} threads. Load generator: {out['client']}; "
        f"{out['gateway']['c1']['seconds']:.0f} s per concurrency level, the client used at most "
        f"{client_share(out):.0%} of one CPU."
    )


def markdown(out: dict) -> str:
    lines = [
        f"### make bench, {out['started']} (commit {out['commit']})",
        "",
        context(out),
        "",
        "| measurement | n | p50 ms | p95 ms | p99 ms | rate / value | errors | load 1 min |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: |",
        *direct_rows(out),
        *gateway_rows(out),
        *start_and_memory_rows(out),
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
