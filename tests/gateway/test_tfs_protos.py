"""The gateway's TF-free protos are wire-compatible with tensorflow-serving-api's, and current."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import any_pb2

from gateway.tfs import tfs_api_pb2 as ours
from tests.fixtures.common import REPO

tf = pytest.importorskip("tensorflow")
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)


def _roundtrip(msg, other_cls):
    back = other_cls.FromString(msg.SerializeToString())
    return back, type(msg).FromString(back.SerializeToString())


def test_predict_request_round_trips_both_ways():
    req = ours.PredictRequest()
    req.model_spec.name = "brain-stroke"
    req.model_spec.version.value = 3
    req.model_spec.signature_name = "serving_default"
    pixels = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    t = req.inputs["image"]
    t.dtype = ours.DT_UINT8
    t.tensor_content = pixels.tobytes()
    for d in pixels.shape:
        t.tensor_shape.dim.add(size=d)
    req.output_filter.append("probabilities")
    theirs, again = _roundtrip(req, predict_pb2.PredictRequest)
    assert theirs.model_spec.name == "brain-stroke" and theirs.model_spec.version.value == 3
    assert (tf.make_ndarray(theirs.inputs["image"]) == pixels).all()
    assert list(theirs.output_filter) == ["probabilities"]
    assert again == req


def test_predict_response_typed_fields_and_content():
    resp = predict_pb2.PredictResponse()
    resp.model_spec.name = "m"
    resp.model_spec.version.value = 7
    resp.outputs["probabilities"].CopyFrom(
        tf.make_tensor_proto(np.array([[0.25, 0.75]], np.float32))
    )
    resp.outputs["labels"].CopyFrom(tf.make_tensor_proto(np.array([[b"a", b"b"]])))
    mine = ours.PredictResponse.FromString(resp.SerializeToString())
    assert mine.model_spec.version.value == 7
    probs = mine.outputs["probabilities"]
    assert probs.dtype == ours.DT_FLOAT
    assert np.frombuffer(probs.tensor_content, np.float32).tolist() == [0.25, 0.75]
    assert list(mine.outputs["labels"].string_val) == [b"a", b"b"]
    assert [d.size for d in mine.outputs["labels"].tensor_shape.dim] == [1, 2]


def test_metadata_and_status_parse():
    from tensorflow.core.protobuf import meta_graph_pb2

    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    info = sig.inputs["image"]
    info.name, info.dtype = "serving_default_image:0", tf.uint8.as_datatype_enum
    for d in (-1, 128, 128, 1):
        info.tensor_shape.dim.add(size=d)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    sig_map.signature_def["serving_default"].CopyFrom(sig)
    resp = get_model_metadata_pb2.GetModelMetadataResponse()
    resp.metadata["signature_def"].Pack(sig_map)
    mine = ours.GetModelMetadataResponse.FromString(resp.SerializeToString())
    packed: any_pb2.Any = mine.metadata["signature_def"]
    assert packed.type_url.endswith("tensorflow.serving.SignatureDefMap")
    parsed = ours.SignatureDefMap.FromString(packed.value)
    got = parsed.signature_def["serving_default"].inputs["image"]
    assert got.dtype == ours.DT_UINT8 and [d.size for d in got.tensor_shape.dim] == [
        -1,
        128,
        128,
        1,
    ]

    status = get_model_status_pb2.GetModelStatusResponse()
    v = status.model_version_status.add(version=2, state=30)
    v.status.error_message = "ok"
    mine_status = ours.GetModelStatusResponse.FromString(status.SerializeToString())
    assert mine_status.model_version_status[0].state == ours.ModelVersionStatus.AVAILABLE


def test_generated_module_is_current(tmp_path):
    """`make protos` output must match the committed gateway/tfs/tfs_api_pb2.py."""
    pytest.importorskip("grpc_tools")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{REPO / 'gateway/tfs/protos'}",
            f"--python_out={tmp_path}",
            str(REPO / "gateway/tfs/protos/tfs_api.proto"),
        ],
        check=True,
    )
    fresh = (tmp_path / "tfs_api_pb2.py").read_text()
    assert fresh == (REPO / "gateway/tfs/tfs_api_pb2.py").read_text(), "run `make protos`"
