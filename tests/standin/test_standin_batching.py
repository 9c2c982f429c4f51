"""The stand-in's server-side batching: the scheduler on its own (fake models, no TensorFlow),
then tiny exported models through the in-process gRPC servicer, then SIGTERM on a real process.

Synchronisation is by construction, never by sleeping: a batch with a long timeout runs only once
it is full, and a "slow model" is a call that blocks on an Event the test releases.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures

import grpc
import numpy as np
import pytest

from ct_standin.batching import BatchScheduler
from ct_standin.batching_config import (
    BatchingOptions,
    load_batching_parameters,
    parse_batching_parameters,
)
from ct_standin.config import ConfigError
from ct_standin.errors import ServingError
from tests.fixtures.common import REPO

LONG_TIMEOUT_US = 30_000_000  # a batch runs only when full: the tests' synchronisation
WAIT_S = 30.0


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


class FakeModel:
    """Doubles its input; records every batch it saw; can be held inside a forward pass."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[np.ndarray] = []
        self.gate = gate
        self.entered = threading.Event()

    def __call__(self, arguments: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.batches.append(arguments["x"].copy())
        self.entered.set()
        if self.gate:
            self.gate.wait(WAIT_S)
        return {"y": arguments["x"] * 2, "first": arguments["x"][:, :1]}


@pytest.fixture
def make_scheduler():
    made: list[BatchScheduler] = []
    records: list[tuple[str, int, int, int]] = []

    def make(**options) -> BatchScheduler:
        settings = {"batch_timeout_micros": LONG_TIMEOUT_US, "num_batch_threads": 1, **options}
        scheduler = BatchScheduler(BatchingOptions(**settings), lambda *r: records.append(r))
        scheduler.records = records
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.stop(timeout=5)


def rows(start: int, count: int, width: int = 3) -> np.ndarray:
    return np.arange(start * width, (start + count) * width, dtype=np.float32).reshape(count, width)


def run_all(calls: list[Callable[[], object]]) -> list[object]:
    """Run the calls concurrently; each result is its value or the exception it raised."""

    def capture(call):
        try:
            return call()
        except ServingError as err:
            return err

    with futures.ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(capture, calls))


def test_concurrent_requests_share_one_forward_pass(make_scheduler):
    scheduler, model = make_scheduler(max_batch_size=6), FakeModel()
    sizes = [1, 2, 3]
    inputs = [rows(10 * i, n) for i, n in enumerate(sizes)]
    results = run_all([lambda x=x: scheduler.run("m", model, {"x": x}) for x in inputs])
    assert len(model.batches) == 1 and model.batches[0].shape == (6, 3)
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(result["y"], x * 2)  # exactly its own rows, in order
        np.testing.assert_array_equal(result["first"], x[:, :1])
    assert scheduler.records == [("", 6, 0, 3)]


def test_different_queues_are_never_mixed(make_scheduler):
    scheduler = make_scheduler(max_batch_size=2, num_batch_threads=2)
    models = {"a": FakeModel(), "b": FakeModel()}
    inputs = {("a", 0): rows(0, 1), ("a", 1): rows(1, 1), ("b", 0): rows(50, 1)}
    inputs[("b", 1)] = rows(51, 1)
    calls = [
        lambda k=k, x=x: scheduler.run(k[0], models[k[0]], {"x": x}) for k, x in inputs.items()
    ]
    for x, result in zip(inputs.values(), run_all(calls), strict=True):
        np.testing.assert_array_equal(result["y"], x * 2)
    assert [b.max() for b in models["a"].batches] == [5.0]  # rows 0 and 1 only
    assert [b.min() for b in models["b"].batches] == [150.0]  # rows 50 and 51 only


def test_different_non_batch_dims_go_in_separate_batches(make_scheduler):
    scheduler, model = make_scheduler(max_batch_size=2), FakeModel()
    inputs = [rows(0, 1, 3), rows(1, 1, 4), rows(2, 1, 3), rows(3, 1, 4)]
    results = run_all([lambda x=x: scheduler.run("m", model, {"x": x}) for x in inputs])
    assert sorted(b.shape for b in model.batches) == [(2, 3), (2, 4)]
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(result["y"], x * 2)


def test_pad_variable_length_inputs_pads_with_the_first_element(make_scheduler):
    scheduler = make_scheduler(max_batch_size=2, pad_variable_length_inputs=True)
    model = FakeModel()
    short, long = rows(0, 1, 2) + 7, rows(1, 1, 4)
    results = run_all([lambda x=x: scheduler.run("m", model, {"x": x}) for x in (short, long)])
    assert len(model.batches) == 1 and model.batches[0].shape == (2, 4)
    padded = next(r for r in results if r["y"][0, 0] == 14)
    np.testing.assert_array_equal(padded["y"], [[14, 16, 14, 14]])  # padded, as TF Serving


def test_a_bad_request_fails_alone(make_scheduler):
    scheduler, model = make_scheduler(max_batch_size=2), FakeModel()
    good = [rows(0, 1), rows(1, 1)]
    calls = [lambda x=x: scheduler.run("m", model, {"x": x}) for x in good]
    calls.insert(1, lambda: scheduler.run("m", model, {"x": rows(5, 1), "z": rows(6, 2)}))
    calls.insert(2, lambda: scheduler.run("m", model, {"x": rows(9, 3)}))
    first, mixed, too_large, second = run_all(calls)
    assert mixed.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "equal 0th-dimension size" in mixed.message
    assert too_large.code == grpc.StatusCode.INVALID_ARGUMENT
    assert too_large.message == "Task size 3 is larger than maximum input batch size 2"
    np.testing.assert_array_equal(first["y"], good[0] * 2)
    np.testing.assert_array_equal(second["y"], good[1] * 2)


def test_a_failing_batch_fails_every_request_with_the_same_status(make_scheduler):
    scheduler = make_scheduler(max_batch_size=3)

    def broken(arguments):
        raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, "out of memory")

    def short_output(arguments):
        return {"y": arguments["x"][:1]}

    for call, code in [
        (broken, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (short_output, grpc.StatusCode.FAILED_PRECONDITION),
    ]:
        errors = run_all(
            [lambda i=i, c=call: scheduler.run(c, c, {"x": rows(i, 1)}) for i in range(3)]
        )
        assert {(e.code, e.message) for e in errors} == {(errors[0].code, errors[0].message)}
        assert errors[0].code == code


def test_a_full_queue_answers_unavailable(make_scheduler):
    gate = threading.Event()
    scheduler = make_scheduler(max_batch_size=1, max_enqueued_batches=1)
    model = FakeModel(gate)
    with futures.ThreadPoolExecutor(3) as pool:
        running = pool.submit(scheduler.run, "m", model, {"x": rows(0, 1)})
        assert model.entered.wait(WAIT_S)  # the only batch thread is busy in the "slow model"
        queued = pool.submit(scheduler.run, "m", model, {"x": rows(1, 1)})
        wait_until(lambda: scheduler._queues)  # the second task holds the one allowed batch
        with pytest.raises(ServingError) as full:
            scheduler.run("m", model, {"x": rows(2, 1)})
        other = pool.submit(scheduler.run, "other", FakeModel(), {"x": rows(3, 1)})
        gate.set()
        assert other.result(WAIT_S)["y"].shape == (1, 3)  # a full queue blocks no other queue
        np.testing.assert_array_equal(running.result(WAIT_S)["y"], rows(0, 1) * 2)
        np.testing.assert_array_equal(queued.result(WAIT_S)["y"], rows(1, 1) * 2)
    assert full.value.code == grpc.StatusCode.UNAVAILABLE
    assert full.value.message.startswith(
        "The batch scheduling queue to which this task was submitted is full"
    )


def test_allowed_batch_sizes_pad_and_the_padding_is_dropped(make_scheduler):
    scheduler = make_scheduler(max_batch_size=4, allowed_batch_sizes=(2, 4))
    model = FakeModel()
    scheduler.drain()  # run each batch as soon as a thread is free: sizes 1 and 3 are padded
    inputs = [rows(0, 1), rows(1, 3)]
    for x in inputs:
        np.testing.assert_array_equal(scheduler.run("m", model, {"x": x})["y"], x * 2)
    assert [b.shape[0] for b in model.batches] == [2, 4]
    np.testing.assert_array_equal(model.batches[1][3], inputs[1][0])  # a copy of the first row
    assert [(r[1], r[2]) for r in scheduler.records] == [(2, 1), (4, 1)]


def test_the_timeout_flushes_a_partial_batch(make_scheduler):
    scheduler, model = make_scheduler(max_batch_size=64, batch_timeout_micros=20_000), FakeModel()
    started = time.monotonic()
    result = scheduler.run("m", model, {"x": rows(0, 2)})
    np.testing.assert_array_equal(result["y"], rows(0, 2) * 2)
    assert time.monotonic() - started >= 0.02
    assert [b.shape[0] for b in model.batches] == [2]


def test_stop_drains_then_fails_what_is_left_with_unavailable(make_scheduler):
    gate = threading.Event()
    scheduler, model = make_scheduler(max_batch_size=1, max_enqueued_batches=4), FakeModel(gate)
    with futures.ThreadPoolExecutor(3) as pool:
        running = pool.submit(scheduler.run, "m", model, {"x": rows(0, 1)})
        assert model.entered.wait(WAIT_S)
        queued = pool.submit(scheduler.run, "m", model, {"x": rows(1, 1)})
        wait_until(lambda: scheduler._queues)
        stopping = pool.submit(scheduler.stop, 0.2)  # the slow batch outlives the grace
        stopping.result(WAIT_S)
        with pytest.raises(ServingError) as late:
            queued.result(WAIT_S)
        gate.set()
        running.result(WAIT_S)  # a batch already running still finishes
    assert late.value.code == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ServingError) as after:
        scheduler.run("m", model, {"x": rows(2, 1)})
    assert after.value.code == grpc.StatusCode.UNAVAILABLE


def test_committed_batching_config_parses():
    options = load_batching_parameters(REPO / "model-server" / "batching.config")
    assert (options.max_batch_size, options.batch_timeout_micros) == (16, 0)
    assert (options.num_batch_threads, options.max_enqueued_batches) == (2, 32)
    assert load_batching_parameters(None).max_batch_size == 1000  # TF Serving's default


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_batch_size { value: 8 } allowed_batch_sizes: 4", "must match max_batch_size"),
        ("max_batch_size { value: 8 } allowed_batch_sizes: 8 allowed_batch_sizes: 4", "increasing"),
        ("num_batch_threads { value: 0 }", "num_batch_threads must be positive"),
        ("enable_large_batch_splitting { value: true }", "not supported"),
        ("max_batch_size: 8", "not a valid BatchingParameters"),
        ("no_such_field { value: 1 }", "not a valid BatchingParameters"),
    ],
)
def test_bad_batching_parameters_are_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_batching_parameters(text)


def test_pad_variable_length_inputs_is_read():
    options = parse_batching_parameters("pad_variable_length_inputs: true")
    assert options.pad_variable_length_inputs and options.max_enqueued_batches == 10


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
    return tf.make_ndarray(outputs[mc.PROBABILITIES_KEY])


def test_model_requests_share_a_forward_pass_and_get_their_own_rows(batching_server):
    channel, metrics, reference = batching_server
    images = [tiny_images(32, 1, seed) for seed in range(BATCH)]  # a distinct image per caller
    before = metrics.batch_sizes("brain-stroke")
    results = run_all([lambda x=x: grpc_predict(channel, "brain-stroke", x) for x in images])
    assert metrics.batch_sizes("brain-stroke")[len(before) :] == [BATCH]  # one forward pass
    for pixels, probabilities in zip(images, results, strict=True):
        expected = unbatched(reference, "brain-stroke", pixels)
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)


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
        got = tf.make_ndarray(servable.predict(request)[1][mc.PROBABILITIES_KEY])
        want = tf.make_ndarray(plain.predict(request)[1][mc.PROBABILITIES_KEY])
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


def test_sigterm_runs_queued_requests_and_exits(tiny_models_config, tmp_path):
    from tests.fixtures.common import free_port
    from tests.fixtures.model_server import standin_command, start_model_server

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
