"""The stand-in's server-side batching with tiny exported models: through the in-process gRPC
servicer (shared forward passes, each caller its own rows, queues never mixed), allowed batch
sizes, then a real process: its flags, and SIGTERM with a request queued.

Synchronisation is by construction, never by sleeping: a batch with a long timeout runs only once
it is full; the SIGTERM test polls the queue gauge until its request is in.
"""

from __future__ import annotations

import time
from concurrent import futures

import grpc
import numpy as np
import pytest

from ct_standin.batching import BatchScheduler
from ct_standin.batching_config import BatchingOptions
from ct_standin.config import ConfigError
from tests.standin.batching_helpers import LONG_TIMEOUT_US, WAIT_S, run_all, wait_until

# --- tiny exported models through the in-process gRPC servicer ----------------------------------

BATCH = 8


@pytest.fixture(scope="module")
def batching_server(tiny_models_root):
    """Registry + servicer in this process over the tiny models, batching with a long timeout
    (a batch runs when BATCH rows are in), and the same models loaded unbatched as a reference."""
    from ct_standin.config import ModelConfig
    from ct_standin.grpc_service import build_server
    from ct_standin.metrics import Metrics
    from ct_standin.registry import Registry
    from ct_standin.servable import load_servable
    from tests.fixtures.common import TINY_MODELS, free_port

    metrics = Metrics()
    options = BatchingOptions(
        max_batch_size=BATCH, batch_timeout_micros=LONG_TIMEOUT_US, num_batch_threads=2
    )
    batcher = BatchScheduler(options, metrics.record_batch)
    models = [ModelConfig(task, tiny_models_root / task) for task, *_ in TINY_MODELS]
    registry = Registry(models, lambda n, v, p: load_servable(n, v, p, False, batcher))
    registry.load(registry.plan())
    reference = {m.name: load_servable(m.name, 1, m.base_path / "1", False) for m in models}
    port = free_port()
    server = build_server(registry, metrics, port, host="127.0.0.1")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel, metrics, reference
    channel.close()
    server.stop(1).wait()
    batcher.stop(timeout=5)


def tiny_images(size: int, count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 1), dtype=np.uint8)


def grpc_predict(channel, task: str, pixels: np.ndarray):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from ct_contract import signatures as mc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = task
    request.inputs[mc.INPUT_KEY].CopyFrom(tf.make_tensor_proto(pixels))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
        response = stub.Predict(request, timeout=WAIT_S)
    except grpc.RpcError as err:
        return err
    return tf.make_ndarray(response.outputs[mc.PROBABILITIES_KEY])


def unbatched(reference, task: str, pixels: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    from ct_contract import signatures as mc

    _, outputs = reference[task].predict({mc.INPUT_KEY: tf.make_tensor_proto(pixels)})
    return outputs[mc.PROBABILITIES_KEY]


@pytest.mark.slow  # loads TensorFlow models in this process
def test_model_requests_share_a_forward_pass_and_get_their_own_rows(batching_server):
    channel, metrics, reference = batching_server
    images = [tiny_images(32, 1, seed) for seed in range(BATCH)]  # a distinct image per caller
    before = metrics.batch_sizes("brain-stroke")
    results = run_all([lambda x=x: grpc_predict(channel, "brain-stroke", x) for x in images])
    assert metrics.batch_sizes("brain-stroke")[len(before) :] == [BATCH]  # one forward pass
    for pixels, probabilities in zip(images, results, strict=True):
        expected = unbatched(reference, "brain-stroke", pixels)
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)


@pytest.mark.slow  # loads TensorFlow models in this process
def test_models_are_never_mixed_and_a_bad_request_fails_alone(batching_server):
    channel, metrics, reference = batching_server
    stroke = [tiny_images(32, 2, seed) for seed in range(BATCH // 2)]
    tumor = [tiny_images(48, 1, seed) for seed in range(BATCH)]
    bad = tiny_images(32, 1, 99).astype(np.float32)  # wrong dtype: refused before batching
    before = {task: len(metrics.batch_sizes(task)) for task in ("brain-stroke", "brain-tumor")}
    calls = [lambda x=x: grpc_predict(channel, "brain-stroke", x) for x in stroke]
    calls += [lambda x=x: grpc_predict(channel, "brain-tumor", x) for x in tumor]
    calls.insert(3, lambda: grpc_predict(channel, "brain-stroke", bad))
    results = run_all(calls)
    error = results.pop(3)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    for task, count in before.items():
        assert metrics.batch_sizes(task)[count:] == [BATCH]
    for pixels, probabilities in zip(stroke + tumor, results, strict=True):
        task = "brain-stroke" if pixels.shape[1] == 32 else "brain-tumor"
        expected = unbatched(reference, task, pixels)
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)


@pytest.mark.slow  # loads TensorFlow models in this process
def test_allowed_batch_sizes_with_a_model_return_unpadded_rows(tiny_models_root):
    import tensorflow as tf

    from ct_contract import signatures as mc
    from ct_standin.servable import load_servable

    options = BatchingOptions(max_batch_size=8, allowed_batch_sizes=(4, 8), num_batch_threads=1)
    records: list = []
    batcher = BatchScheduler(options, lambda *r: records.append(r))
    try:
        servable = load_servable(
            "brain-tumor", 1, tiny_models_root / "brain-tumor" / "1", False, batcher
        )
        plain = load_servable("brain-tumor", 1, tiny_models_root / "brain-tumor" / "1", False)
        pixels = tiny_images(48, 3, seed=5)
        request = {mc.INPUT_KEY: tf.make_tensor_proto(pixels)}
        got = servable.predict(request)[1][mc.PROBABILITIES_KEY]
        want = plain.predict(request)[1][mc.PROBABILITIES_KEY]
    finally:
        batcher.stop(timeout=5)
    assert got.shape == (3, 7)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert records == [("brain-tumor", 4, 1, 1)]  # 3 rows ran as 4


# --- a real stand-in process: flags, metrics and SIGTERM with requests queued -------------------


def _queued_requests(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    name = ":tensorflow:serving:batching_session:queued_requests "
    return int(next(line for line in text.splitlines() if line.startswith(name)).split()[-1])


@pytest.mark.integration
def test_sigterm_runs_queued_requests_and_exits(tiny_models_config, tmp_path):
    from ct_local.standin import standin_command, start_model_server
    from tests.fixtures.common import free_port

    batching = tmp_path / "batching.config"
    batching.write_text(
        f"max_batch_size {{ value: 64 }}\nbatch_timeout_micros {{ value: {LONG_TIMEOUT_US} }}\n"
    )
    grpc_port, rest_port = free_port(), free_port()
    command = [
        *standin_command(tiny_models_config, grpc_port, rest_port, 0),
        "--enable_batching",
        f"--batching_parameters_file={batching}",
        "--enable_model_warmup=false",
    ]
    server = start_model_server(tiny_models_config, grpc_port, rest_port, command=command)
    try:
        url = f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics"
        with grpc.insecure_channel(server.target) as channel, futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(grpc_predict, channel, "brain-stroke", tiny_images(32, 2, 0))
            # The request sits in a batch that would wait 30 s: wait until it has been queued.
            wait_until(lambda: _queued_requests(url) == 1)
            started = time.monotonic()
            server.process.terminate()
            result = pending.result(WAIT_S)
        assert not isinstance(result, grpc.RpcError), result
        assert result.shape == (2, 2)
        assert server.process.wait(WAIT_S) == 0
        assert time.monotonic() - started < 10  # drained, not the 30 s batch timeout
        assert "Stopped" in server.log()
    finally:
        server.stop()


def test_batching_flags_are_read_like_tensorflow_model_servers(tmp_path):
    from ct_standin.__main__ import _batching, parse_args

    config = f"--model_config_file={tmp_path}/m.config"
    bad = tmp_path / "bad.config"
    bad.write_text("max_batch_size { value: 4 } allowed_batch_sizes: 2")
    assert _batching(parse_args([config, f"--batching_parameters_file={bad}"])) is None
    assert _batching(parse_args([config, "--enable_batching"])).max_batch_size == 1000
    with pytest.raises(ConfigError, match="must match max_batch_size"):
        _batching(parse_args([config, "--enable_batching", f"--batching_parameters_file={bad}"]))
