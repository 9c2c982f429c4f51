"""numpy arrays <-> TensorProto (our TF-free cttriage.tfs subset of tensorflow.TensorProto).

We send compact `tensor_content` bytes. Responses may use either `tensor_content` or the typed
repeated fields (float_val, int_val, string_val, ...): TF Serving picks per dtype and version.
"""

from __future__ import annotations

import numpy as np

from gateway.tfs import tfs_api_pb2 as pb


class TensorError(ValueError):
    """A TensorProto that cannot be turned into an array (or an array with no TF dtype)."""


# numpy dtype -> DataType, and the typed TensorProto field that holds values of that dtype.
_NUMERIC: dict[np.dtype, tuple[int, str]] = {
    np.dtype(np.float32): (pb.DT_FLOAT, "float_val"),
    np.dtype(np.float64): (pb.DT_DOUBLE, "double_val"),
    np.dtype(np.int32): (pb.DT_INT32, "int_val"),
    np.dtype(np.uint8): (pb.DT_UINT8, "int_val"),
    np.dtype(np.int16): (pb.DT_INT16, "int_val"),
    np.dtype(np.int8): (pb.DT_INT8, "int_val"),
    np.dtype(np.int64): (pb.DT_INT64, "int64_val"),
    np.dtype(np.bool_): (pb.DT_BOOL, "bool_val"),
    np.dtype(np.float16): (pb.DT_HALF, "half_val"),
}
_BY_ENUM = {enum: (dtype, field) for dtype, (enum, field) in _NUMERIC.items()}


def numpy_dtype(data_type: int) -> np.dtype:
    """The numpy dtype of a numeric DataType; TensorError for strings and unknown types."""
    if data_type not in _BY_ENUM:
        raise TensorError(f"unsupported numeric dtype {pb.DataType.Name(data_type)}")
    return _BY_ENUM[data_type][0]


def make_tensor_proto(array: np.ndarray) -> pb.TensorProto:
    """Encode a numeric array as dtype + shape + little-endian `tensor_content`, or strings."""
    array = np.asarray(array)
    shape = pb.TensorShapeProto(dim=[pb.TensorShapeProto.Dim(size=n) for n in array.shape])
    if array.dtype.kind in ("U", "S", "O"):
        values = [v if isinstance(v, bytes) else str(v).encode() for v in array.ravel()]
        return pb.TensorProto(dtype=pb.DT_STRING, tensor_shape=shape, string_val=values)
    native = array.dtype.newbyteorder("=")
    if native not in _NUMERIC:
        raise TensorError(f"no TensorFlow dtype for numpy {array.dtype}")
    content = np.ascontiguousarray(array, dtype=native.newbyteorder("<")).tobytes()
    return pb.TensorProto(dtype=_NUMERIC[native][0], tensor_shape=shape, tensor_content=content)


def make_ndarray(proto: pb.TensorProto) -> np.ndarray:
    """Decode a TensorProto from `tensor_content` or its typed value field."""
    shape = _shape(proto)
    size = int(np.prod(shape, dtype=np.int64))
    if proto.dtype == pb.DT_STRING:
        return _fill(np.array(list(proto.string_val), dtype=object), shape, size)
    dtype, field = _BY_ENUM.get(proto.dtype, (None, None))
    if dtype is None:
        raise TensorError(f"unsupported tensor dtype {pb.DataType.Name(proto.dtype)}")
    if proto.tensor_content:
        if len(proto.tensor_content) != size * dtype.itemsize:
            raise TensorError(
                f"tensor_content has {len(proto.tensor_content)} bytes, shape {shape} of "
                f"{dtype} needs {size * dtype.itemsize}"
            )
        return (
            np.frombuffer(proto.tensor_content, dtype.newbyteorder("<"))
            .astype(dtype)[:size]
            .reshape(shape)
        )
    values = np.array(getattr(proto, field))
    if proto.dtype == pb.DT_HALF:  # half_val carries the float16 bit patterns in int32s
        values = values.astype(np.uint16).view(np.float16)
    return _fill(values.astype(dtype), shape, size)


def _shape(proto: pb.TensorProto) -> tuple[int, ...]:
    if proto.tensor_shape.unknown_rank:
        raise TensorError("tensor of unknown rank")
    dims = tuple(int(d.size) for d in proto.tensor_shape.dim)
    if any(n < 0 for n in dims):
        raise TensorError(f"tensor with unknown dimension: {dims}")
    return dims


def _fill(values: np.ndarray, shape: tuple[int, ...], size: int) -> np.ndarray:
    """TF semantics: fewer values than elements means the last value repeats."""
    if len(values) == size:
        return values.reshape(shape)
    if 0 < len(values) < size:
        return np.concatenate([values, np.repeat(values[-1:], size - len(values))]).reshape(shape)
    raise TensorError(f"tensor has {len(values)} values for shape {shape}")
