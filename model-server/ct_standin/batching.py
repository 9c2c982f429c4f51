"""Server-side batching, modelled on TF Serving's BatchingSession over a SharedBatchScheduler.

Each Predict becomes a task in a queue of its own (servable, signature, input shapes); a pool of
`num_batch_threads` threads shared by every queue runs one forward pass per batch and hands each
caller exactly its rows back (the tensors of a batch: batch_tensors.py). No TensorFlow here:
tasks carry numpy arrays and a `call`.

Matches TF Serving (shared_batch_scheduler.h, batching_session.cc, batching_util.cc):
- a task larger than max_batch_size is INVALID_ARGUMENT "Task size N is larger than maximum input
  batch size M" (TF Serving splits it only with enable_large_batch_splitting, which we refuse);
- a task that does not fit the open batch closes it and opens a new one, unless the queue already
  holds max_enqueued_batches batches (the open one included; batches being processed are not
  counted): then UNAVAILABLE "The batch scheduling queue to which this task was submitted is full";
- the open batch is processed when full, or batch_timeout_micros after its first task arrived
  (or at once while shutting down); free threads take the batch whose first task is oldest;
- allowed_batch_sizes: the batch is padded with copies of the last task's first row up to the
  next allowed size, and the padding rows are dropped from the outputs;
- pad_variable_length_inputs: each input is padded at the end of every non-batch dimension up to
  the batch's largest, with that tensor's first element (outputs are not un-padded: TF Serving
  does not either);
- a failure of the batched call fails every task of the batch with the same status; an output
  whose 0th dimension is not the batch size is FAILED_PRECONDITION.
Differences:
- TF Serving concatenates whatever lands in one queue, and with padding off a batch mixing
  non-batch shapes fails as a whole (FAILED_PRECONDITION); here tasks whose non-batch dims differ
  never share a queue (with padding on: whose ranks differ), so nobody fails for a neighbour.
- TF Serving keys queues by the exact input and output tensor names, so a request with an
  output_filter bypasses batching; here the queue is per signature, the batch computes every
  output and each caller keeps the ones it asked for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field

import grpc
import numpy as np

from ct_standin.batch_tensors import Arrays, batch_rows, merge_inputs, split_outputs
from ct_standin.batching_config import BatchingOptions
from ct_standin.errors import ServingError

log = logging.getLogger(__name__)

Call = Callable[[Arrays], Mapping[str, np.ndarray]]
# (label for metrics, rows after padding, padding rows, requests in the batch)
BatchListener = Callable[[str, int, int, int], None]

INVALID = grpc.StatusCode.INVALID_ARGUMENT
SHUTTING_DOWN = "The model server is shutting down; the request was not run"


class _Task:
    def __init__(self, arguments: Arrays, rows: int) -> None:
        self.arguments = arguments
        self.rows = rows
        self.done = threading.Event()
        self.outputs: Arrays = {}
        self.error: ServingError | None = None

    def finish(self, outputs: Arrays | None, error: ServingError | None) -> None:
        self.outputs, self.error = outputs or {}, error
        self.done.set()


@dataclass
class _Batch:
    tasks: list[_Task] = field(default_factory=list)
    rows: int = 0
    started: float = 0.0  # monotonic time of its first task: the timeout runs from here


@dataclass
class _Queue:
    call: Call
    label: str
    batches: deque[_Batch] = field(default_factory=lambda: deque([_Batch()]))  # last: open

    @property
    def open(self) -> _Batch:
        return self.batches[-1]


class BatchScheduler:
    """Queues, batch threads and shutdown. `run` blocks the calling (gRPC) thread until done."""

    def __init__(self, options: BatchingOptions, listener: BatchListener | None = None) -> None:
        self.options = options
        self._listener = listener
        self._cond = threading.Condition()
        self._queues: dict[Hashable, _Queue] = {}
        self._busy = 0
        self._draining = False
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{options.thread_pool_name}_{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, key: Hashable, call: Call, arguments: Arrays, label: str = "") -> Arrays:
        """Run `call` on these inputs as part of a batch; raises the batch's ServingError."""
        task = _Task(arguments, batch_rows(arguments))
        self._submit((key, self._shape_key(arguments)), call, label, task)
        task.done.wait()  # always set: by a batch thread, or by stop()
        if task.error is not None:
            raise task.error
        return task.outputs

    def _shape_key(self, arguments: Arrays) -> tuple:
        """Tasks merge only when this matches: non-batch dims, or only ranks when padding."""
        if self.options.pad_variable_length_inputs:
            return tuple(sorted((name, value.ndim) for name, value in arguments.items()))
        return tuple(sorted((name, value.shape[1:]) for name, value in arguments.items()))

    def _submit(self, key: Hashable, call: Call, label: str, task: _Task) -> None:
        limit = self.options.max_batch_size
        if task.rows > limit:
            raise ServingError(
                INVALID, f"Task size {task.rows} is larger than maximum input batch size {limit}"
            )
        with self._cond:
            if self._stopped:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
            queue = self._queues.setdefault(key, _Queue(call, label))
            if queue.open.rows + task.rows > limit:
                if len(queue.batches) >= self.options.max_enqueued_batches:
                    raise ServingError(
                        grpc.StatusCode.UNAVAILABLE,
                        "The batch scheduling queue to which this task was submitted is full; "
                        f"currently {len(queue.batches)} batches enqueued and "
                        f"max_enqueued_batches is {self.options.max_enqueued_batches}",
                    )
                queue.batches.append(_Batch())  # closes the previous open batch
            batch = queue.open
            if not batch.tasks:
                batch.started = time.monotonic()
            batch.tasks.append(task)
            batch.rows += task.rows
            self._cond.notify_all()  # a batch may be ready, or a new timeout is to be kept

    def queued_requests(self) -> int:
        """Requests waiting in a queue (not yet taken by a batch thread)."""
        with self._cond:
            return sum(len(b.tasks) for q in self._queues.values() for b in q.batches)

    # --- batch threads -------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                picked = self._next_batch()
                while picked is None:
                    if self._stopped:
                        return
                    self._cond.wait(self._seconds_to_next_timeout())
                    picked = self._next_batch()
                self._busy += 1
            try:
                self._process(*picked)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()  # stop() waits for the queues to empty

    def _ready(self, queue: _Queue, now: float) -> bool:
        if len(queue.batches) > 1:  # a closed batch is waiting
            return True
        batch = queue.open
        if not batch.tasks:
            return False
        timeout = self.options.batch_timeout_micros / 1e6
        full = batch.rows >= self.options.max_batch_size
        return self._draining or full or now >= batch.started + timeout

    def _next_batch(self) -> tuple[_Queue, _Batch] | None:
        """The ready batch whose first task waited longest, taken off its queue (lock held)."""
        if self._stopped:
            return None
        now = time.monotonic()
        ready = [(q.batches[0].started, k) for k, q in self._queues.items() if self._ready(q, now)]
        if not ready:
            return None
        key = min(ready, key=lambda item: item[0])[1]
        queue = self._queues[key]
        batch = queue.batches.popleft()
        if not queue.batches:
            del self._queues[key]  # an idle queue costs nothing to recreate; no stale servables
        return queue, batch

    def _seconds_to_next_timeout(self) -> float | None:
        """How long until an open batch times out; None (wait for a submit) if none is pending."""
        timeout = self.options.batch_timeout_micros / 1e6
        starts = [q.open.started for q in self._queues.values() if q.open.tasks]
        if not starts:
            return None
        return max(0.0, min(starts) + timeout - time.monotonic())

    def _process(self, queue: _Queue, batch: _Batch) -> None:
        padding = 0
        try:
            rows = [task.rows for task in batch.tasks]
            merged, padding = merge_inputs([t.arguments for t in batch.tasks], rows, self.options)
            per_task = split_outputs(queue.call(merged), rows, padding)
        except ServingError as err:
            self._finish(batch, None, err)
        except Exception as err:  # a batch thread must survive anything a model does
            log.exception("Batch for %s failed", queue.label)
            self._finish(batch, None, ServingError(grpc.StatusCode.INTERNAL, f"{err}"))
        else:
            for task, outputs in zip(batch.tasks, per_task, strict=True):
                task.finish(outputs, None)
        log.debug(
            "Batch for %s: %d requests, %d rows, %d padding",
            queue.label,
            len(batch.tasks),
            batch.rows,
            padding,
        )
        if self._listener:
            self._listener(queue.label, batch.rows + padding, padding, len(batch.tasks))

    @staticmethod
    def _finish(batch: _Batch, outputs: Arrays | None, error: ServingError | None) -> None:
        for task in batch.tasks:
            task.finish(outputs, error)

    # --- shutdown ------------------------------------------------------------------------------

    def drain(self) -> None:
        """Process every open batch now instead of waiting for it to fill or time out."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    def stop(self, timeout: float) -> None:
        """Drain for up to `timeout` s, then fail what is left with UNAVAILABLE; no new tasks."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._draining = True
            self._cond.notify_all()
            while self._queues or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._stopped = True
            leftover = [t for q in self._queues.values() for b in q.batches for t in b.tasks]
            self._queues.clear()
            self._cond.notify_all()
        for task in leftover:
            task.finish(None, ServingError(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN))
        for thread in self._threads:  # a thread still inside a forward pass is left to finish
            thread.join(max(0.0, deadline - time.monotonic()))
