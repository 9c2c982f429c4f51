"""What each served model needs from the gateway, read from the model itself.

Per task: GetModelMetadata gives the `serving_default` signature (input size, channels, dtype) and
one Predict on the `model_info` signature gives labels, threshold and positive index. The result is
cached per task for CT_METADATA_TTL_S, and per (task, version) for good (versions are immutable),
so a Predict answered by another version (a rollout, pods on different versions) is still labelled
with that version's own labels. The registry also says whether each task can answer (/readyz): an
AVAILABLE version on the model server whose model info it can load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from ct_contract import signatures as mc
from gateway.errors import ApiError, BadGatewayError
from gateway.models.info_json import Description, DescriptionError
from gateway.models.info_json import parse as _parse_json
from gateway.tfs import tfs_api_pb2 as pb
from gateway.tfs.client import TfsClient
from gateway.tfs.tensors import TensorError, make_ndarray, numpy_dtype

SIGNATURE_DEF_MAP_TYPE = "tensorflow.serving.SignatureDefMap"
_MAX_VERSIONS_KEPT = 8  # per task, in the by-version cache


class ModelContractError(BadGatewayError):
    """The served model does not follow ct_contract/signatures.py."""

    CODE = "model_contract"


@dataclass(frozen=True)
class ModelInfo:
    task: str
    version: int
    input_size: int
    channels: int
    input_dtype: np.dtype
    labels: tuple[str, ...]
    threshold: float | None  # binary tasks only
    positive_index: int | None  # binary tasks only
    description: Description = Description()
    explainable: bool = False  # has the explain signature

    @property
    def input_shape(self) -> list[int]:
        return [self.input_size, self.input_size, self.channels]

    @property
    def binary(self) -> bool:
        return self.positive_index is not None

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "version": self.version,
            "labels": list(self.labels),
            "input_shape": self.input_shape,
            "input_dtype": self.input_dtype.name,
            "threshold": self.threshold,
            "positive_label": self.labels[self.positive_index] if self.binary else None,
            "explainable": self.explainable,
            **self.description.to_dict(),
        }


def signature_defs(response: pb.GetModelMetadataResponse) -> dict[str, pb.SignatureDef]:
    """The SignatureDefMap packed in a GetModelMetadataResponse."""
    packed = response.metadata.get("signature_def")
    if packed is None:
        raise ModelContractError("model metadata has no signature_def")
    if not packed.type_url.endswith(SIGNATURE_DEF_MAP_TYPE):
        raise ModelContractError(f"model metadata signature_def has type {packed.type_url!r}")
    try:
        return dict(pb.SignatureDefMap.FromString(packed.value).signature_def)
    except Exception as exc:  # protobuf's DecodeError, or a wrong message
        raise ModelContractError(f"cannot parse the model's SignatureDefMap: {exc}") from None


def _signature(sigs: dict[str, pb.SignatureDef], name: str) -> pb.SignatureDef:
    if name not in sigs:
        raise ModelContractError(f"model has no {name!r} signature (has {sorted(sigs)})")
    return sigs[name]


def parse_input(sigs: dict[str, pb.SignatureDef]) -> tuple[int, int, np.dtype, int | None]:
    """(size, channels, dtype, n_classes or None) from the serving signature."""
    serving = _signature(sigs, mc.PREDICT_SIGNATURE)
    if mc.INPUT_KEY not in serving.inputs or mc.PROBABILITIES_KEY not in serving.outputs:
        raise ModelContractError(
            f"{mc.PREDICT_SIGNATURE} must map {mc.INPUT_KEY!r} to {mc.PROBABILITIES_KEY!r}"
        )
    tensor = serving.inputs[mc.INPUT_KEY]
    dims = [d.size for d in tensor.tensor_shape.dim]
    if len(dims) != 4 or dims[1] <= 0 or dims[1] != dims[2] or dims[3] not in (1, 3):
        raise ModelContractError(f"input {mc.INPUT_KEY!r} has shape {dims}, not [N, S, S, 1|3]")
    if tensor.dtype not in (pb.DT_UINT8, pb.DT_FLOAT):
        raise ModelContractError(f"input dtype {pb.DataType.Name(tensor.dtype)} is unsupported")
    out_dims = [d.size for d in serving.outputs[mc.PROBABILITIES_KEY].tensor_shape.dim]
    n_classes = out_dims[1] if len(out_dims) == 2 and out_dims[1] > 0 else None
    return dims[1], dims[3], numpy_dtype(tensor.dtype), n_classes


def parse_explain(sigs: dict[str, pb.SignatureDef], size: int, channels: int) -> bool:
    """Whether the model has an explain signature the gateway can use (same input as predict)."""
    explain = sigs.get(mc.EXPLAIN_SIGNATURE)
    if explain is None:
        return False
    wanted = (mc.PROBABILITIES_KEY, mc.HEATMAP_KEY, mc.HEATMAP_CLASS_KEY)
    if mc.INPUT_KEY not in explain.inputs or not all(k in explain.outputs for k in wanted):
        raise ModelContractError(
            f"{mc.EXPLAIN_SIGNATURE} must map {mc.INPUT_KEY!r} to {', '.join(wanted)}"
        )
    dims = [d.size for d in explain.inputs[mc.INPUT_KEY].tensor_shape.dim]
    if dims[1:] != [size, size, channels]:
        raise ModelContractError(f"{mc.EXPLAIN_SIGNATURE} input has shape {dims}")
    return True


def parse_description(
    response: pb.PredictResponse, labels: tuple[str, ...], binary: bool
) -> Description:
    """The model's info_json (an empty Description for versions exported before it existed)."""
    if mc.INFO_JSON_KEY not in response.outputs:
        return Description()
    try:
        values = make_ndarray(response.outputs[mc.INFO_JSON_KEY]).reshape(-1)
        return _parse_json(values[0] if values.size else None, labels, binary)
    except (TensorError, DescriptionError) as exc:
        raise ModelContractError(f"bad {mc.INFO_JSON_KEY!r}: {exc}") from None


def parse_info(response: pb.PredictResponse) -> tuple[tuple[str, ...], float | None, int | None]:
    """(labels, threshold, positive_index) from a `model_info` Predict response for batch 1."""
    try:
        labels = make_ndarray(response.outputs[mc.LABELS_KEY])
        threshold = make_ndarray(response.outputs[mc.THRESHOLD_KEY])
        positive = make_ndarray(response.outputs[mc.POSITIVE_INDEX_KEY])
    except (KeyError, TensorError) as exc:
        raise ModelContractError(f"bad {mc.INFO_SIGNATURE} output: {exc}") from None
    if labels.ndim != 2 or labels.shape[0] < 1 or labels.shape[1] < 2:
        raise ModelContractError(f"labels have shape {labels.shape}, need [1, K>=2]")
    names = tuple(_text(v) for v in labels[0])
    index = int(positive.reshape(-1)[0])
    if index < 0:
        return names, None, None
    cut = float(threshold.reshape(-1)[0])
    if index >= len(names) or not 0.0 <= cut <= 1.0:
        raise ModelContractError(f"positive index {index} / threshold {cut} do not fit {names}")
    return names, cut, index


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class ModelRegistry:
    """Thread-safe cache of ModelInfo per task (TTL) and per (task, version)."""

    def __init__(
        self, client: TfsClient, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._task_locks: dict[str, threading.Lock] = {}
        self._current: dict[str, tuple[float, ModelInfo]] = {}
        self._by_version: dict[tuple[str, int], ModelInfo] = {}

    def get(self, task: str) -> ModelInfo:
        """The task's current model; fetched when missing or older than the TTL."""
        cached = self._fresh(task)
        if cached is not None:
            return cached
        with self._task_lock(task):  # one refresh per task at a time; others wait for it
            cached = self._fresh(task)
            return cached if cached is not None else self._load(task, None)

    def for_version(self, task: str, version: int) -> ModelInfo:
        """The model info of one version; the task's cache is refreshed when it is another."""
        with self._lock:
            known = self._by_version.get((task, version))
            current = self._current.get(task)
        if current is None or current[1].version != version:
            self.invalidate(task)
        if known is not None:
            return known
        with self._task_lock(task):
            return self._load(task, version)

    def invalidate(self, task: str) -> None:
        with self._lock:
            self._current.pop(task, None)

    def _fresh(self, task: str) -> ModelInfo | None:
        with self._lock:
            entry = self._current.get(task)
        if entry is None or self._clock() - entry[0] >= self._ttl_s:
            return None
        return entry[1]

    def _task_lock(self, task: str) -> threading.Lock:
        with self._lock:
            return self._task_locks.setdefault(task, threading.Lock())

    def _load(self, task: str, version: int | None) -> ModelInfo:
        metadata = self._client.metadata(task, version)
        loaded_version = int(metadata.model_spec.version.value)
        sigs = signature_defs(metadata)
        size, channels, dtype, n_classes = parse_input(sigs)
        explainable = parse_explain(sigs, size, channels)
        info_response = self._client.predict(
            task,
            {mc.INFO_INPUT_KEY: np.zeros([1], np.int32)},
            mc.INFO_SIGNATURE,
            version=loaded_version or None,
        )
        labels, threshold, positive = parse_info(info_response)
        if n_classes is not None and n_classes != len(labels):
            raise ModelContractError(f"model outputs {n_classes} classes but has labels {labels}")
        description = parse_description(info_response, labels, positive is not None)
        info = ModelInfo(
            task,
            loaded_version,
            size,
            channels,
            dtype,
            labels,
            threshold,
            positive,
            description,
            explainable,
        )
        self._store(info, current=version is None)
        return info

    def task_readiness(self, task: str) -> dict:
        """{"ready": bool, ...}: the version and available versions, or why it is not ready."""
        try:
            status = self._client.status(task)
        except ApiError as error:
            return {"ready": False, "reason": error.message}
        states = status.model_version_status
        available = sorted(v.version for v in states if v.state == pb.ModelVersionStatus.AVAILABLE)
        if not available:
            named = [f"v{v.version} {pb.ModelVersionStatus.State.Name(v.state)}" for v in states]
            return {
                "ready": False,
                "reason": f"no AVAILABLE version ({', '.join(named) or 'none'})",
            }
        try:
            version = self.get(task).version
        except ApiError as error:
            return {"ready": False, "reason": error.message, "available_versions": available}
        return {"ready": True, "version": version, "available_versions": available}

    def readiness(self, tasks: Sequence[str], deadline_s: float) -> dict[str, dict]:
        """task_readiness of every task, asked at once and waited for `deadline_s` in all (one gRPC
        deadline), however many tasks and calls each takes: a frozen model server must not hold
        /readyz for a deadline per call. A task still waiting then is not ready; its calls end on
        their own deadlines, in threads nobody waits for."""
        pool = ThreadPoolExecutor(max(1, len(tasks)), thread_name_prefix="ct-readiness")
        try:
            futures = {task: pool.submit(self.task_readiness, task) for task in tasks}
            wait(futures.values(), timeout=deadline_s)
        finally:
            pool.shutdown(wait=False)
        late = f"the model server did not answer within {deadline_s:g} s"
        return {
            task: future.result() if future.done() else {"ready": False, "reason": late}
            for task, future in futures.items()
        }

    def _store(self, info: ModelInfo, current: bool) -> None:
        with self._lock:
            if current:
                self._current[info.task] = (self._clock(), info)
            self._by_version[(info.task, info.version)] = info
            versions = sorted(v for t, v in self._by_version if t == info.task)
            for old in versions[:-_MAX_VERSIONS_KEPT]:
                del self._by_version[(info.task, old)]
