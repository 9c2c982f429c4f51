"""One loaded model version: its SavedModel, signature defs, Predict, and warmup replay."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from ct_contract.signatures import PREDICT_SIGNATURE
from ct_standin.errors import ServingError, status_code

log = logging.getLogger(__name__)

SERVE_TAG = "serve"
DEFAULT_SIGNATURE = PREDICT_SIGNATURE  # the contract's predict signature is also TF's default
# Fixed by TF Serving: <version>/assets.extra/tf_serving_warmup_requests, at most 1000 records.
WARMUP_PATH = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000
# A request tensor may not claim more than this after decoding (typed *_val fields can be padded
# out to the declared shape, so a tiny message could otherwise ask for gigabytes).
MAX_TENSOR_BYTES = 1 << 30

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _dtype_name(enum: int) -> str:
    try:
        return tf.dtypes.as_dtype(enum).name
    except TypeError:
        return types_pb2.DataType.Name(enum) if enum in types_pb2.DataType.values() else str(enum)


def read_meta_graph(version_dir: Path) -> meta_graph_pb2.MetaGraphDef:
    """The `serve` meta graph of a SavedModel (binary or text)."""
    saved_model = saved_model_pb2.SavedModel()
    binary = version_dir / "saved_model.pb"
    if binary.is_file():
        saved_model.ParseFromString(binary.read_bytes())
    else:
        text_format.Parse((version_dir / "saved_model.pbtxt").read_text(), saved_model)
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ValueError(f"{version_dir}: no meta graph tagged {SERVE_TAG!r}")


def read_signature_defs(version_dir: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The `serve` meta graph's SignatureDefs, exactly as TF Serving reports them in metadata."""
    return dict(read_meta_graph(version_dir).signature_def)


@dataclass(frozen=True)
class Signature:
    """One runnable signature: input specs by alias, output aliases, and the forward call
    (numpy in, numpy out; TensorFlow errors already mapped to ServingError)."""

    inputs: Mapping[str, tf.TensorSpec]
    outputs: tuple[str, ...]
    call: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def _guarded(call: Callable) -> Callable:
    def run(arguments: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return call(arguments)
        except tf.errors.OpError as err:
            raise ServingError(status_code(err.error_code), err.message) from err
        except (TypeError, ValueError) as err:
            raise ServingError(INVALID, str(err)) from err

    return run


def _tf2_signatures(path: Path) -> tuple[object, dict[str, Signature]]:
    """Object-graph (TF2) SavedModels, through tf.saved_model.load's signature functions."""
    loaded = tf.saved_model.load(str(path), tags=[SERVE_TAG])

    def caller(function, specs):
        def call(arguments):
            tensors = {k: tf.constant(v, dtype=specs[k].dtype) for k, v in arguments.items()}
            return {k: v.numpy() for k, v in function(**tensors).items()}

        return call

    signatures = {}
    for key, function in loaded.signatures.items():
        specs = function.structured_input_signature[1]
        outputs = tuple(function.structured_outputs)
        signatures[key] = Signature(dict(specs), outputs, _guarded(caller(function, specs)))
    return loaded, signatures


def _tf1_signatures(
    path: Path, defs: Mapping[str, meta_graph_pb2.SignatureDef]
) -> tuple[object, dict[str, Signature]]:
    """Graph-only (TF1) SavedModels run in a v1 Session by tensor name, as TF Serving does.
    tf.saved_model.load cannot serve them all: it turns signature keys into Python parameter
    names, so a key such as "in" or "x:0" fails to load there."""
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], str(path))

    def caller(feeds: dict[str, str], fetches: dict[str, str]):
        def call(arguments):
            return session.run(fetches, {feeds[k]: v for k, v in arguments.items()})

        return call

    signatures = {}
    for key, definition in defs.items():
        infos = [*definition.inputs.values(), *definition.outputs.values()]
        if not all(info.name for info in infos):  # sparse / composite tensors: not for Predict
            log.warning("%s: signature %s has non-dense tensors; not served", path, key)
            continue
        specs = {
            alias: tf.TensorSpec(tf.TensorShape(info.tensor_shape), tf.as_dtype(info.dtype))
            for alias, info in definition.inputs.items()
        }
        feeds = {alias: info.name for alias, info in definition.inputs.items()}
        fetches = {alias: info.name for alias, info in definition.outputs.items()}
        signatures[key] = Signature(specs, tuple(fetches), _guarded(caller(feeds, fetches)))
    return session, signatures


class Servable:
    """A model version ready to serve. Calls are thread-safe (TF functions and Sessions are).

    With a batcher, every Predict (warmup replay included, as in TF Serving, where warmup runs
    through the batching session) joins a batch of its (servable, signature) queue; every
    signature is batched, model_info too, as TF Serving batches every signature of a model.
    """

    def __init__(self, name: str, version: int, path: Path, batcher=None) -> None:
        self.name = name
        self.version = version
        self.path = Path(path)
        self.batcher = batcher
        meta_graph = read_meta_graph(self.path)
        self.signature_defs = dict(meta_graph.signature_def)
        # TF2 SavedModels carry an object graph; TF1 ones (Builder, Estimator) only a graph.
        if meta_graph.object_graph_def.nodes:
            self._loaded, self._signatures = _tf2_signatures(self.path)
        else:
            self._loaded, self._signatures = _tf1_signatures(self.path, self.signature_defs)

    def predict(
        self,
        inputs: Mapping[str, tensor_pb2.TensorProto],
        signature_name: str = "",
        output_filter: Sequence[str] = (),
    ) -> tuple[str, dict[str, np.ndarray]]:
        """Run a signature; returns its resolved name and the (filtered) outputs.
        Requests are checked here, before batching, so a bad one never fails its batch-mates."""
        signature_name = signature_name or DEFAULT_SIGNATURE
        signature = self.signature(signature_name)
        wanted = _check_output_filter(output_filter, list(signature.outputs))
        outputs = self.run(signature_name, _decode_inputs(inputs, signature.inputs))
        return signature_name, {alias: outputs[alias] for alias in wanted}

    def signature(self, name: str) -> Signature:
        """A runnable signature by key; FAILED_PRECONDITION (TF Serving's answer) if none."""
        signature = self._signatures.get(name)
        if signature is None:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.'
            )
        return signature

    def run(self, name: str, arguments: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run signature `name` on checked numpy inputs, through the batcher if there is one."""
        signature = self._signatures[name]
        if self.batcher is None:
            return signature.call(arguments)
        key = (self, name)  # one queue per loaded version and signature
        return self.batcher.run(key, signature.call, arguments, self.name)

    def replay_warmup(self) -> int:
        """Replay assets.extra warmup PredictLogs like TF Serving; any failure fails the load."""
        path = self.path / WARMUP_PATH
        if not path.is_file():
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS):
            entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if entry.WhichOneof("log_type") != "predict_log":
                raise ValueError(f"{path}: only predict_log warmup records are supported")
            request = entry.predict_log.request
            self.predict(request.inputs, request.model_spec.signature_name, request.output_filter)
            count += 1
        return count


def _check_output_filter(output_filter: Sequence[str], outputs: list[str]) -> list[str]:
    if not output_filter:
        return outputs
    if len(set(output_filter)) != len(output_filter):
        raise ServingError(INVALID, "duplicate output tensor alias in output_filter")
    for alias in output_filter:
        if alias not in outputs:
            raise ServingError(
                INVALID,
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {{{','.join(sorted(outputs))}}}.",
            )
    return list(output_filter)


def _decode_inputs(
    inputs: Mapping[str, tensor_pb2.TensorProto], specs: Mapping[str, tf.TensorSpec]
) -> dict[str, np.ndarray]:
    sent, expected = set(inputs), set(specs)
    if sent != expected:
        raise ServingError(
            INVALID,
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - sent))}}}.",
        )
    return {
        alias: _decode(index, alias, inputs[alias], specs[alias])
        for index, alias in enumerate(sorted(specs))
    }


def _shape_list(shape: tf.TensorShape) -> list[int] | str:
    if shape.rank is None:
        return "any shape"
    return [-1 if size is None else size for size in shape.as_list()]


def _decode(index: int, alias: str, proto: tensor_pb2.TensorProto, spec: tf.TensorSpec):
    if proto.dtype != spec.dtype.as_datatype_enum:
        raise ServingError(
            INVALID,
            f"Expects arg[{index}] ({alias}) to be {spec.dtype.name} but "
            f"{_dtype_name(proto.dtype)} is provided",
        )
    if proto.tensor_shape.unknown_rank:
        raise ServingError(INVALID, f"input {alias}: tensor_shape must be known")
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if any(size < 0 for size in dims) or not spec.shape.is_compatible_with(dims):
        raise ServingError(
            INVALID,
            f"input {alias} has shape {dims} but the signature expects {_shape_list(spec.shape)}",
        )
    if math.prod(dims) * max(spec.dtype.size, 1) > MAX_TENSOR_BYTES:
        raise ServingError(INVALID, f"input {alias} of shape {dims} is too large")
    if proto.tensor_content and spec.dtype in _ZERO_COPY:
        return _from_content(alias, proto.tensor_content, dims, spec.dtype.as_numpy_dtype)
    try:
        value = tf.make_ndarray(proto)
        # Convert now, not in the batch: a value that cannot be the signature's dtype fails alone.
        return (
            value
            if spec.dtype == tf.string
            else value.astype(spec.dtype.as_numpy_dtype, copy=False)
        )
    except (ValueError, TypeError) as err:
        raise ServingError(INVALID, f"input {alias} is not a valid tensor: {err}") from err


# Dtypes whose tensor_content is read in place (a view, no copy and no TensorFlow call).
_ZERO_COPY = {tf.uint8, tf.int8, tf.int16, tf.int32, tf.int64, tf.float32, tf.float64}


def _from_content(alias: str, content: bytes, dims: list[int], dtype) -> np.ndarray:
    wanted = math.prod(dims) * np.dtype(dtype).itemsize
    if len(content) != wanted:
        raise ServingError(
            INVALID,
            f"input {alias} is not a valid tensor: tensor_content has {len(content)} bytes, "
            f"shape {dims} needs {wanted}",
        )
    little = np.dtype(dtype).newbyteorder("<")
    return np.frombuffer(content, little).reshape(dims).astype(dtype, copy=False)


def load_servable(
    name: str, version: int, path: Path, warmup: bool = True, batcher=None
) -> Servable:
    servable = Servable(name, version, path, batcher)
    if warmup:
        count = servable.replay_warmup()
        log.info("Replayed %d warmup requests for %s version %d", count, name, version)
    return servable
