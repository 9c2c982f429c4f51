"""The model without the gateway: the bare forward pass, and gRPC straight at the model server.

bare_forward and grpc_figures run in spawned child processes (ProcessPoolExecutor), so
TensorFlow's threads and memory, and the load generator, stay out of the measured processes.
"""

from __future__ import annotations

import threading
import time

from ct_contract import signatures as mc
from ct_contract.preprocess import load_model_input
from ct_local.bench.report import BATCH, TASK
from ct_local.bench.timing import Tally, latency_stats, load, timed
from gateway.config import Settings
from gateway.models.registry import ModelRegistry
from gateway.tfs.client import TfsClient


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

    def timed_batches(batch: int, n: int) -> tuple[list[float], float]:
        def call() -> None:
            serve(**{mc.INPUT_KEY: inputs[batch]})[mc.PROBABILITIES_KEY].numpy()

        timed(call, 5)  # warm-up: tracing, first allocations
        started = time.perf_counter()
        times = timed(call, n)
        return times, time.perf_counter() - started

    b1, b1_total = timed_batches(1, n1)
    b1_load = load()
    cpu = time.process_time()  # this process's CPU, all of TensorFlow's threads
    b16, b16_total = timed_batches(BATCH, n16)
    cpu_per_image_ms = (time.process_time() - cpu) * 1000 / ((n16 + 5) * BATCH)
    return {
        "tensorflow": tf.__version__,
        "input": [size, size, channels],
        "batch1": {**latency_stats(b1), "images_per_s": round(n1 / b1_total, 1), "load": b1_load},
        "batch16": {
            **latency_stats(b16),
            "batch": BATCH,
            "images_per_s": round(n16 * BATCH / b16_total, 1),
            "cpu_ms_per_image": round(cpu_per_image_ms, 2),
            "load": load(),
        },
    }


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


def _predict_loop(client: TfsClient, batch, stop_at: float, tally: Tally) -> None:
    while time.monotonic() < stop_at:
        t0 = time.perf_counter()
        try:
            client.predict(TASK, {mc.INPUT_KEY: batch}, mc.PREDICT_SIGNATURE)
        except Exception as err:  # noqa: BLE001 - counted, the run goes on
            tally.error(type(err).__name__)
            continue
        tally.ok(time.perf_counter() - t0)


def grpc_figures(target: str, image: bytes, n1: int, concurrency: int, duration: float) -> dict:
    """Predict on preprocessed input straight at the model server: sequential, then C threads
    sharing one channel (as one gateway process does) for `duration` seconds."""
    cpu = time.process_time()
    predict_only, _ = direct_latencies(target, TASK, image, n1)
    c1 = {**latency_stats(predict_only), "load": load()}
    client = TfsClient(Settings(models=(TASK,), default_task=TASK, model_server=target))
    info = ModelRegistry(client, ttl_s=3600).get(TASK)
    batch = load_model_input(image, info.input_size, info.channels)[None]
    tally = Tally()
    started = time.monotonic()
    args = (client, batch, started + duration, tally)
    threads = [threading.Thread(target=_predict_loop, args=args) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    client.close()
    cn = {
        **latency_stats(tally.latencies),
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "req_per_s": round(len(tally.latencies) / seconds, 1),
        "errors": tally.errors,
        "load": load(),
    }
    c1["req_per_s"] = round(len(predict_only) / sum(predict_only), 1)
    return {"c1": c1, f"c{concurrency}": cn, "client_cpu_s": round(time.process_time() - cpu, 2)}
