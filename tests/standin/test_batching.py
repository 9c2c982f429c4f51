"""The stand-in's server-side batching: the scheduler on its own (fake models, no TensorFlow) and
the batching parameters (tiny exported models and a real process: test_batching_models).

Synchronisation is by construction, never by sleeping: a batch with a long timeout runs only once
it is full, and a "slow model" is a call that blocks on an Event the test releases.
"""

from __future__ import annotations

import threading
import time
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
from tests.standin.batching_helpers import LONG_TIMEOUT_US, WAIT_S, run_all, wait_until


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
