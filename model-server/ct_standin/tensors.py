"""numpy -> TensorProto as TF Serving answers: typed value fields (float_val, int_val,
string_val, ...) by default, compact `tensor_content` bytes only with
--enable_serialization_as_tensor_content (TF Serving's Tensor::AsProtoField vs
AsProtoTensorContent)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

# numpy dtype -> (DataType, the typed field TF Serving fills for it)
_TYPED: dict[np.dtype, tuple[int, str]] = {
    np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val"),
    np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val"),
    np.dtype(np.int32): (types_pb2.DT_INT32, "int_val"),
    np.dtype(np.int16): (types_pb2.DT_INT16, "int_val"),
    np.dtype(np.int8): (types_pb2.DT_INT8, "int_val"),
    np.dtype(np.uint8): (types_pb2.DT_UINT8, "int_val"),
    np.dtype(np.uint16): (types_pb2.DT_UINT16, "int_val"),
    np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val"),
    np.dtype(np.uint32): (types_pb2.DT_UINT32, "uint32_val"),
    np.dtype(np.uint64): (types_pb2.DT_UINT64, "uint64_val"),
    np.dtype(np.bool_): (types_pb2.DT_BOOL, "bool_val"),
}


def _shape(array: np.ndarray) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in array.shape]
    )


def to_tensor_proto(array: np.ndarray, as_tensor_content: bool = False) -> tensor_pb2.TensorProto:
    """One output tensor as TF Serving serializes it (see the module docstring)."""
    array = np.asarray(array)
    if array.dtype.kind in ("O", "S", "U"):  # DT_STRING is always string_val
        values = [v if isinstance(v, bytes) else str(v).encode() for v in array.ravel()]
        return tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, tensor_shape=_shape(array), string_val=values
        )
    native = array.dtype.newbyteorder("=")
    if native not in _TYPED:
        return tf.make_tensor_proto(array)  # half, bfloat16, complex: TensorFlow's own encoding
    dtype, field = _TYPED[native]
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=_shape(array))
    if as_tensor_content:
        proto.tensor_content = np.ascontiguousarray(array, native.newbyteorder("<")).tobytes()
    else:
        getattr(proto, field).extend(array.ravel().tolist())
    return proto
