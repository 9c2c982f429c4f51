"""The stand-in model server as a real process, through the real tensorflow_serving client stubs:
Predict, model_info, metadata and status (REST and lifecycle: test_process.py)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from ct_contract import signatures as mc
from tests.standin.grpc_requests import (
    AVAILABLE,
    MODELS,
    STROKE,
    TUMOR,
    images,
    info_request,
    predict_request,
    rpc_error,
    status_request,
)

pytestmark = pytest.mark.integration

BIG_MESSAGE = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def stubs(model_server):
    options = [
        ("grpc.max_send_message_length", BIG_MESSAGE),
        ("grpc.max_receive_message_length", BIG_MESSAGE),
    ]
    with grpc.insecure_channel(model_server.target, options=options) as channel:
        yield (
            prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel),
        )


@pytest.fixture(scope="module")
def predict(stubs):
    return stubs[0].Predict


@pytest.mark.parametrize("task", [STROKE, TUMOR])
@pytest.mark.parametrize("batch", [1, 3])
def test_predict_returns_a_distribution_per_image(predict, task, batch):
    response = predict(predict_request(task, images(task, batch)), timeout=30)
    probabilities = tf.make_ndarray(response.outputs[mc.PROBABILITIES_KEY])
    assert probabilities.shape == (batch, len(MODELS[task][0]))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert response.model_spec.name == task
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == mc.PREDICT_SIGNATURE
    typed = response.outputs[mc.PROBABILITIES_KEY]  # TF Serving's default encoding
    assert len(typed.float_val) == probabilities.size and not typed.tensor_content


def test_predict_decodes_typed_values_like_tensor_content(predict):
    pixels = images(STROKE, 2, seed=3)
    typed = tf.make_tensor_proto(pixels)
    typed.ClearField("tensor_content")
    typed.int_val.extend(pixels.ravel().tolist())
    request = predict_request(STROKE)
    request.inputs[mc.INPUT_KEY].CopyFrom(typed)
    from_typed = tf.make_ndarray(predict(request, timeout=30).outputs[mc.PROBABILITIES_KEY])
    from_bytes = predict(predict_request(STROKE, pixels), timeout=30).outputs[mc.PROBABILITIES_KEY]
    np.testing.assert_array_equal(from_typed, tf.make_ndarray(from_bytes))


def test_predict_explicit_version(predict):
    response = predict(predict_request(STROKE, images(STROKE), version=1), timeout=30)
    assert response.model_spec.version.value == 1


def test_unknown_model_and_version_are_not_found(predict):
    unknown_model = rpc_error(predict, predict_request("no-such-model", images(STROKE)))
    assert unknown_model.code() == grpc.StatusCode.NOT_FOUND
    assert "Servable not found for request" in unknown_model.details()
    unknown_version = rpc_error(predict, predict_request(STROKE, images(STROKE), version=99))
    assert unknown_version.code() == grpc.StatusCode.NOT_FOUND
    assert "Specific(brain-stroke, 99)" in unknown_version.details()


@pytest.mark.parametrize(
    "pixels",
    [
        images(STROKE).astype(np.float32),  # wrong dtype
        images(TUMOR),  # wrong size for this model
        images(STROKE)[..., 0],  # wrong rank
    ],
    ids=["dtype", "size", "rank"],
)
def test_wrong_input_is_invalid_argument(predict, pixels):
    error = rpc_error(predict, predict_request(STROKE, pixels))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_missing_extra_and_malformed_inputs_are_invalid_argument(predict):
    missing = rpc_error(predict, predict_request(STROKE))
    assert missing.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Missing but required: {image}" in missing.details()
    extra = predict_request(STROKE, images(STROKE))
    extra.inputs["other"].CopyFrom(tf.make_tensor_proto(np.zeros(1, np.int32)))
    assert rpc_error(predict, extra).code() == grpc.StatusCode.INVALID_ARGUMENT
    truncated = predict_request(STROKE, images(STROKE))
    truncated.inputs[mc.INPUT_KEY].tensor_content = b"\0" * 10
    assert rpc_error(predict, truncated).code() == grpc.StatusCode.INVALID_ARGUMENT
    huge = predict_request(STROKE, images(STROKE))
    huge.inputs[mc.INPUT_KEY].tensor_shape.dim[0].size = 2**40
    assert rpc_error(predict, huge).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_signature_is_failed_precondition(predict):
    error = rpc_error(predict, predict_request(STROKE, images(STROKE), signature="nope"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_model_info_signature_describes_the_model(predict):
    for task, (labels, _, threshold, positive) in MODELS.items():
        outputs = predict(info_request(task), timeout=30).outputs
        assert [b.decode() for b in tf.make_ndarray(outputs[mc.LABELS_KEY])[0]] == labels
        assert tf.make_ndarray(outputs[mc.THRESHOLD_KEY])[0] == pytest.approx(threshold)
        assert tf.make_ndarray(outputs[mc.POSITIVE_INDEX_KEY])[0] == positive


def test_output_filter(predict):
    response = predict(info_request(STROKE, [mc.LABELS_KEY]), timeout=30)
    assert list(response.outputs) == [mc.LABELS_KEY]
    error = rpc_error(predict, info_request(STROKE, ["nope"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_large_request_beyond_grpc_default_limit(predict):
    pixels = images(TUMOR, 2500)  # 5.8 MB: over gRPC's 4 MB default receive limit
    response = predict(predict_request(TUMOR, pixels), timeout=60)
    assert tf.make_ndarray(response.outputs[mc.PROBABILITIES_KEY]).shape[0] == 2500


def metadata(stubs, task: str, fields=("signature_def",)):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
    request.model_spec.name = task
    return stubs[0].GetModelMetadata(request, timeout=30)


@pytest.mark.parametrize("task", [STROKE, TUMOR])
def test_metadata_signature_defs(stubs, task):
    response = metadata(stubs, task)
    assert response.model_spec.version.value == 1
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert packed.Unpack(signatures)
    serving = signatures.signature_def[mc.PREDICT_SIGNATURE]
    assert serving.method_name == "tensorflow/serving/predict"
    image = serving.inputs[mc.INPUT_KEY]
    size = MODELS[task][1]
    assert image.dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in image.tensor_shape.dim] == [-1, size, size, 1]
    probabilities = serving.outputs[mc.PROBABILITIES_KEY]
    assert [d.size for d in probabilities.tensor_shape.dim] == [-1, len(MODELS[task][0])]
    info = signatures.signature_def[mc.INFO_SIGNATURE]
    assert set(info.outputs) == {
        mc.LABELS_KEY,
        mc.THRESHOLD_KEY,
        mc.POSITIVE_INDEX_KEY,
        mc.INFO_JSON_KEY,
    }
    assert mc.EXPLAIN_SIGNATURE in signatures.signature_def
    assert info.outputs[mc.LABELS_KEY].dtype == tf.string.as_datatype_enum


def test_metadata_errors(stubs):
    with pytest.raises(grpc.RpcError) as unsupported:
        metadata(stubs, STROKE, ["graph_def"])
    assert unsupported.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as unknown:
        metadata(stubs, "no-such-model")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_model_status(stubs):
    status = stubs[1].GetModelStatus
    for task in MODELS:
        versions = status(status_request(task), timeout=30).model_version_status
        assert [(v.version, v.state, v.status.error_code) for v in versions] == [(1, AVAILABLE, 0)]
    assert status(status_request(STROKE, 1), timeout=30).model_version_status[0].version == 1
    assert rpc_error(status, status_request(STROKE, 99)).code() == grpc.StatusCode.NOT_FOUND
    assert rpc_error(status, status_request("no-such-model")).code() == grpc.StatusCode.NOT_FOUND
