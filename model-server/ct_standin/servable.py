"""One loaded model version: its SavedModel, signature defs, Predict, and warmup replay."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from ct_standin.errors import ServingError, status_code

log = logging.getLogger(__name__)

SERVE_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"
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


def read_signature_defs(version_dir: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The `serve` meta graph's SignatureDefs, exactly as TF Serving reports them in metadata."""
    saved_model = saved_model_pb2.SavedModel()
    binary = version_dir / "saved_model.pb"
    if binary.is_file():
        saved_model.ParseFromString(binary.read_bytes())
    else:
        text_format.Parse((version_dir / "saved_model.pbtxt").read_text(), saved_model)
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"{version_dir}: no meta graph tagged {SERVE_TAG!r}")


class Servable:
    """A model version ready to serve. Calls are thread-safe (TF functions are)."""

    def __init__(self, name: str, version: int, path: Path) -> None:
        self.name = name
        self.version = version
        self.path = Path(path)
        self.signature_defs = read_signature_defs(self.path)
        self._loaded = tf.saved_model.load(str(self.path), tags=[SERVE_TAG])
        self._signatures = dict(self._loaded.signatures)

    def predict(
        self,
        inputs: Mapping[str, tensor_pb2.TensorProto],
        signature_name: str = "",
        output_filter: Sequence[str] = (),
    ) -> tuple[str, dict[str, tensor_pb2.TensorProto]]:
        """Run a signature; returns its resolved name and the (filtered) outputs as protos."""
        signature_name = signature_name or DEFAULT_SIGNATURE
        function = self._signatures.get(signature_name)
        if function is None:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'Serving signature key "{signature_name}" not found.',
            )
        specs = function.structured_input_signature[1]
        wanted = _check_output_filter(output_filter, list(function.structured_outputs))
        arguments = _decode_inputs(inputs, specs)
        try:
            outputs = function(**arguments)
        except tf.errors.OpError as err:
            raise ServingError(status_code(err.error_code), err.message) from err
        except (TypeError, ValueError) as err:
            raise ServingError(INVALID, str(err)) from err
        return signature_name, {
            alias: tf.make_tensor_proto(outputs[alias].numpy()) for alias in wanted
        }

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
) -> dict[str, tf.Tensor]:
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
    try:
        return tf.constant(tf.make_ndarray(proto), dtype=spec.dtype)
    except (ValueError, TypeError) as err:
        raise ServingError(INVALID, f"input {alias} is not a valid tensor: {err}") from err


def load_servable(name: str, version: int, path: Path, warmup: bool = True) -> Servable:
    servable = Servable(name, version, path)
    if warmup:
        count = servable.replay_warmup()
        log.info("Replayed %d warmup requests for %s version %d", count, name, version)
    return servable
