"""gateway/tfs/tensors.py: numpy <-> TensorProto in both encodings TF Serving uses."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.tfs import tfs_api_pb2 as pb
from gateway.tfs.tensors import TensorError, make_ndarray, make_tensor_proto


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64]
)
def test_tensor_content_round_trip(dtype) -> None:
    array = (np.arange(24).reshape(2, 3, 4) % 100).astype(dtype)
    proto = make_tensor_proto(array)
    assert proto.tensor_content and not proto.float_val
    assert [d.size for d in proto.tensor_shape.dim] == [2, 3, 4]
    decoded = make_ndarray(proto)
    assert decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, array)


def test_uint8_image_is_sent_compactly() -> None:
    image = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 1), dtype=np.uint8)
    proto = make_tensor_proto(image)
    assert proto.dtype == pb.DT_UINT8
    assert proto.tensor_content == image.tobytes()


def test_big_endian_input_is_sent_little_endian() -> None:
    array = np.array([1.5, -2.0], dtype=">f4")
    assert make_tensor_proto(array).tensor_content == np.array([1.5, -2.0], "<f4").tobytes()


@pytest.mark.parametrize(
    ("dtype", "field", "values", "expected"),
    [
        (pb.DT_FLOAT, "float_val", [0.25, 0.75], np.array([[0.25, 0.75]], np.float32)),
        (pb.DT_DOUBLE, "double_val", [0.5, 0.5], np.array([[0.5, 0.5]])),
        (pb.DT_INT32, "int_val", [1, -1], np.array([[1, -1]], np.int32)),
        (pb.DT_UINT8, "int_val", [0, 255], np.array([[0, 255]], np.uint8)),
        (pb.DT_INT64, "int64_val", [2**40, 3], np.array([[2**40, 3]], np.int64)),
        (pb.DT_BOOL, "bool_val", [True, False], np.array([[True, False]])),
        (pb.DT_STRING, "string_val", [b"Normal", b"Stroke"], np.array([[b"Normal", b"Stroke"]])),
    ],
)
def test_typed_fields_decode(dtype, field, values, expected) -> None:
    proto = pb.TensorProto(dtype=dtype, tensor_shape=_shape(1, 2), **{field: values})
    decoded = make_ndarray(proto)
    assert decoded.shape == (1, 2)
    np.testing.assert_array_equal(decoded, expected)


def test_half_val_holds_float16_bits() -> None:
    bits = np.array([1.5, -0.25], np.float16).view(np.uint16).astype(np.int32)
    proto = pb.TensorProto(dtype=pb.DT_HALF, tensor_shape=_shape(2), half_val=bits.tolist())
    np.testing.assert_array_equal(make_ndarray(proto), np.array([1.5, -0.25], np.float16))


def test_a_single_value_fills_the_shape_like_tensorflow() -> None:
    proto = pb.TensorProto(dtype=pb.DT_FLOAT, tensor_shape=_shape(2, 2), float_val=[0.5])
    np.testing.assert_array_equal(make_ndarray(proto), np.full((2, 2), 0.5, np.float32))


def test_strings_encode_as_string_val() -> None:
    proto = make_tensor_proto(np.array([["a", "b"]]))
    assert proto.dtype == pb.DT_STRING and list(proto.string_val) == [b"a", b"b"]


@pytest.mark.parametrize(
    "proto",
    [
        pb.TensorProto(
            dtype=pb.DT_FLOAT,
            tensor_shape=pb.TensorShapeProto(dim=[pb.TensorShapeProto.Dim(size=2)]),
            tensor_content=b"\0" * 7,
        ),
        pb.TensorProto(
            dtype=pb.DT_FLOAT,
            tensor_shape=pb.TensorShapeProto(dim=[pb.TensorShapeProto.Dim(size=2)]),
            float_val=[1.0, 2.0, 3.0],
        ),
        pb.TensorProto(
            dtype=pb.DT_FLOAT,
            tensor_shape=pb.TensorShapeProto(dim=[pb.TensorShapeProto.Dim(size=-1)]),
        ),
        pb.TensorProto(dtype=pb.DT_FLOAT, tensor_shape=pb.TensorShapeProto(unknown_rank=True)),
        pb.TensorProto(dtype=pb.DT_INVALID),
    ],
)
def test_malformed_tensors_raise(proto) -> None:
    with pytest.raises(TensorError):
        make_ndarray(proto)


def test_unsupported_numpy_dtype_raises() -> None:
    with pytest.raises(TensorError):
        make_tensor_proto(np.zeros(2, np.complex64))


def _shape(*dims: int) -> pb.TensorShapeProto:
    return pb.TensorShapeProto(dim=[pb.TensorShapeProto.Dim(size=d) for d in dims])
