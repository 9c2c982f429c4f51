"""The gateway's gRPC client for TF Serving: one long-lived channel per process.

gunicorn forks workers, and a gRPC channel must not cross a fork, so the channel is created lazily
in the process that first uses it (and again if the pid changes). Every call carries a deadline;
UNAVAILABLE is retried once, quickly, within that same deadline, on a fresh channel: a channel
whose model server went away waits out gRPC's exponential reconnect backoff before it tries again,
so a restarted server would otherwise get no traffic for seconds. gRPC failures become ApiErrors.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping

import grpc
import numpy as np

from gateway.config import Settings
from gateway.errors import (
    ApiError,
    BadGatewayError,
    GatewayTimeoutError,
    NotFoundError,
    ServiceUnavailableError,
)
from gateway.observability import metrics
from gateway.tfs import tfs_api_pb2 as pb
from gateway.tfs.stub import ModelServiceStub, PredictionServiceStub
from gateway.tfs.tensors import make_tensor_proto

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
RETRY_DELAY_S = 0.1
# A fresh channel at most this often per process, so a dead model server is not met by a channel
# storm; retired channels are closed once no call can still be using them.
RECONNECT_INTERVAL_S = 1.0
RETRY_AFTER_S = "1"  # Retry-After header on 503
_DETAILS_CHARS = 300
_Stubs = tuple[grpc.Channel, PredictionServiceStub, ModelServiceStub]
_Pick = Callable[[_Stubs], grpc.UnaryUnaryMultiCallable]  # the method to call, from the stubs


def channel_options(settings: Settings) -> list[tuple[str, object]]:
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.lb_policy_name", settings.grpc_lb_policy),
        # Ping only while calls are in flight: TF Serving (gRPC's server defaults) answers idle
        # pings more often than every 5 minutes with GOAWAY too_many_pings.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 0),
        # Reconnect quickly after a model-server pod restarts or is replaced (gRPC's defaults:
        # 1 s growing to 120 s). Connecting is cheap: a refused connect costs one SYN.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 1_000),
        # Own subchannels: with the default global pool a new channel to the same target would
        # share the old one's backed-off subchannel, and reconnecting would change nothing.
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.enable_retries", 0),  # we retry ourselves, inside the deadline
    ]


def map_rpc_error(error: grpc.RpcError, task: str) -> ApiError:
    """The HTTP error a failed model-server call becomes."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else "") or ""
    text = f"model server: {code.name}: {details[:_DETAILS_CHARS]}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return GatewayTimeoutError(f"model {task!r} did not answer in time ({text})")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return ServiceUnavailableError(
            f"model server unavailable ({text})",
            code="model_server_unavailable",
            headers={"Retry-After": RETRY_AFTER_S},
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(f"model {task!r} is not served ({text})", code="model_not_found")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
        # We built the request from the model's own metadata, so a rejection is our bug (or a
        # version change in between), not the client's.
        return BadGatewayError(f"model server rejected the request ({text})", code="model_rejected")
    return BadGatewayError(f"model server error ({text})")


class TfsClient:
    """Calls TF Serving for a task; thread-safe; one channel per process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._channel: grpc.Channel | None = None
        self._created = 0.0  # time.monotonic() of the current channel
        self._retired: list[tuple[float, grpc.Channel]] = []  # (when, channel) to close later
        self._predict_stub: PredictionServiceStub | None = None
        self._model_stub: ModelServiceStub | None = None

    def _stubs(self) -> _Stubs:
        with self._lock:
            if self._pid != os.getpid() or self._channel is None:
                self._retired = []  # a parent's channels are not ours to close
                self._open()
            stubs = (self._channel, self._predict_stub, self._model_stub)
            expired = self._take_expired()
        for channel in expired:
            channel.close()
        return stubs

    def _open(self) -> None:
        self._channel = grpc.insecure_channel(
            self._settings.model_server, options=channel_options(self._settings)
        )
        self._predict_stub = PredictionServiceStub(self._channel)
        self._model_stub = ModelServiceStub(self._channel)
        self._pid = os.getpid()
        self._created = time.monotonic()

    def _reconnect(self, failed: grpc.Channel) -> None:
        """Replace `failed` by a fresh channel, unless another call already did or did lately."""
        with self._lock:
            now = time.monotonic()
            if self._channel is not failed or now - self._created < RECONNECT_INTERVAL_S:
                return
            self._retired.append((now, failed))  # calls in flight on it may still succeed
            self._open()

    def _take_expired(self) -> list[grpc.Channel]:
        """Retired channels that no call can still be using (retired before its deadline)."""
        cutoff = time.monotonic() - self._settings.grpc_deadline_s - RECONNECT_INTERVAL_S
        expired = [channel for when, channel in self._retired if when < cutoff]
        if expired:
            self._retired = [(when, c) for when, c in self._retired if when >= cutoff]
        return expired

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                for channel in [c for _, c in self._retired] + [self._channel]:
                    if channel is not None:
                        channel.close()
            self._channel = None
            self._retired = []

    def status(self, task: str) -> pb.GetModelStatusResponse:
        request = pb.GetModelStatusRequest(model_spec=pb.ModelSpec(name=task))
        return self._call(task, "GetModelStatus", lambda s: s[2].GetModelStatus, request)

    def metadata(
        self, task: str, version: int | None = None, label: str = ""
    ) -> pb.GetModelMetadataResponse:
        """The model's signatures: of `version`, of the version `label` names, else the newest."""
        spec = _spec(task, version)
        if label:
            spec.version_label = label
        request = pb.GetModelMetadataRequest(model_spec=spec, metadata_field=["signature_def"])
        return self._call(task, "GetModelMetadata", lambda s: s[1].GetModelMetadata, request)

    def predict(
        self,
        task: str,
        inputs: Mapping[str, np.ndarray],
        signature: str,
        version: int | None = None,
    ) -> pb.PredictResponse:
        request = pb.PredictRequest(model_spec=_spec(task, version, signature))
        for key, array in inputs.items():
            request.inputs[key].CopyFrom(make_tensor_proto(array))
        return self._call(task, f"Predict:{signature}", lambda s: s[1].Predict, request)

    def _call(self, task: str, method: str, pick: _Pick, request):
        start = time.monotonic()
        deadline = start + self._settings.grpc_deadline_s
        try:
            return self._with_retry(pick, request, deadline)
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
            metrics.MODEL_SERVER_ERRORS.labels(task, method, code.name).inc()
            raise map_rpc_error(error, task) from None
        finally:
            metrics.MODEL_SERVER_LATENCY.labels(task, method).observe(time.monotonic() - start)

    def _with_retry(self, pick: _Pick, request, deadline: float):
        stubs = self._stubs()
        try:
            return pick(stubs)(request, timeout=deadline - time.monotonic())
        except grpc.RpcError as error:
            retry_at = time.monotonic() + RETRY_DELAY_S
            if error.code() != grpc.StatusCode.UNAVAILABLE or retry_at >= deadline:
                raise
            self._reconnect(stubs[0])
            time.sleep(RETRY_DELAY_S)
            return pick(self._stubs())(request, timeout=deadline - time.monotonic())


def _spec(task: str, version: int | None, signature: str = "") -> pb.ModelSpec:
    spec = pb.ModelSpec(name=task, signature_name=signature)
    if version is not None:
        spec.version.value = version
    return spec
