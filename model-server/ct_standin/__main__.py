"""Run the stand-in: `python -m ct_standin --port=8500 --rest_api_port=8501 --model_config_file=F`.

Flags are spelled like tensorflow_model_server's so a launcher can pass the same ones to either.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ct_standin.batching_config import BatchingOptions, load_batching_parameters
from ct_standin.config import GRPC_PORT, ConfigError, ModelConfig, load_models

log = logging.getLogger("ct_standin")
GRACE_SECONDS = 5.0


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _channel_args(text: str) -> list[tuple[str, object]]:
    """--grpc_channel_arguments=key=value,key=value (integers stay integers), as TF Serving."""
    pairs = []
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"channel argument {item!r} is not key=value")
        pairs.append((key.strip(), int(value) if value.strip().lstrip("-").isdigit() else value))
    return pairs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ct_standin", description=__doc__)
    parser.add_argument("--port", type=int, default=GRPC_PORT, help="gRPC port")
    parser.add_argument("--rest_api_port", type=int, default=0, help="REST port; 0: no REST")
    parser.add_argument("--model_config_file", type=Path)
    parser.add_argument("--model_name", help="single model (without a config file)")
    parser.add_argument("--model_base_path", type=Path)
    parser.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="seconds between scans for new versions; 0 or less: scan once",
    )
    parser.add_argument("--grpc_channel_arguments", type=_channel_args, default=[])
    parser.add_argument("--enable_model_warmup", type=_bool, nargs="?", const=True, default=True)
    parser.add_argument("--enable_batching", type=_bool, nargs="?", const=True, default=False)
    # Read only with --enable_batching, as TF Serving does; without a file, its defaults.
    parser.add_argument("--batching_parameters_file", type=Path)
    parser.add_argument("--monitoring_config_file")
    # Off as in TF Serving: Predict answers in float_val, int_val...; on: in tensor_content.
    parser.add_argument(
        "--enable_serialization_as_tensor_content",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
    )
    args = parser.parse_args(argv)
    if not args.model_config_file and not (args.model_name and args.model_base_path):
        parser.error("give --model_config_file, or --model_name and --model_base_path")
    return args


def _models(args: argparse.Namespace) -> list[ModelConfig]:
    if args.model_config_file:
        return load_models(args.model_config_file)
    return [ModelConfig(args.model_name, args.model_base_path.resolve())]


def _poll(registry, pending, interval: float, stop: threading.Event, started: float) -> None:
    """Load the initial versions, then rescan disk every `interval` seconds until stopped."""
    announced = False
    while True:
        try:
            registry.load(pending)
            registry.sync()
        except Exception:  # keep polling: a transient disk error must not end serving
            log.exception("Scanning model versions failed")
        pending = []
        available = registry.available_versions()
        if not announced and all(available.values()):
            announced = True
            listing = ", ".join(f"{name} {versions}" for name, versions in available.items())
            log.info("All models AVAILABLE after %.1f s: %s", time.monotonic() - started, listing)
        if interval <= 0 or stop.wait(interval):
            return


def _batching(args: argparse.Namespace) -> BatchingOptions | None:
    if not args.enable_batching:
        if args.batching_parameters_file:
            log.info("--batching_parameters_file is ignored without --enable_batching")
        return None
    return load_batching_parameters(args.batching_parameters_file)


def serve(args: argparse.Namespace) -> int:
    started = time.monotonic()
    models = _models(args)  # a bad config fails fast, before TensorFlow is imported
    batching = _batching(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    from ct_standin.batching import BatchScheduler
    from ct_standin.grpc_service import build_server
    from ct_standin.metrics import BATCHING_PREFIX, Metrics
    from ct_standin.registry import Registry
    from ct_standin.rest import start_rest_server
    from ct_standin.servable import load_servable

    metrics = Metrics()
    batcher = BatchScheduler(batching, metrics.record_batch) if batching else None
    if batcher:
        log.info("Batching: %s", batching)
        metrics.add_gauge(f"{BATCHING_PREFIX}:queued_requests", batcher.queued_requests)
    registry = Registry(
        models, lambda n, v, p: load_servable(n, v, p, args.enable_model_warmup, batcher)
    )
    pending = registry.plan()  # versions found now answer UNAVAILABLE, not NOT_FOUND, while loading
    server = build_server(
        registry,
        metrics,
        args.port,
        args.grpc_channel_arguments,
        tensor_content=args.enable_serialization_as_tensor_content,
    )
    server.start()
    rest = start_rest_server(registry, metrics, args.rest_api_port) if args.rest_api_port else None
    log.info("Serving gRPC on port %d, REST on port %s", args.port, args.rest_api_port or "-")

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    poller = threading.Thread(
        target=_poll,
        name="poll",
        daemon=True,
        args=(registry, pending, args.file_system_poll_wait_seconds, stop, started),
    )
    poller.start()
    stop.wait()
    log.info("Stopping: finishing in-flight requests (up to %.0f s)", GRACE_SECONDS)
    stopped = server.stop(GRACE_SECONDS)  # refuses new RPCs at once
    if batcher:
        batcher.drain()  # run queued requests now rather than wait for full batches
    stopped.wait()
    if batcher:
        batcher.stop(timeout=1.0)  # whatever is still queued answers UNAVAILABLE
    if rest:
        rest.shutdown()
    log.info("Stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = parse_args(argv)
    try:
        return serve(args)
    except (ConfigError, OSError) as err:
        log.error("%s", err)
        return 1


if __name__ == "__main__":
    code = main()
    logging.shutdown()
    # A model may still be loading on a daemon thread; do not wait for TensorFlow's teardown.
    os._exit(code)
