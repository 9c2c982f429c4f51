"""The stand-in model server as a real process, through the real tensorflow_serving client stubs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from ct_contract import signatures as mc
from tests.fixtures.common import TINY_MODELS, free_port, write_models_config
from tests.fixtures.model_server import MODEL_SERVER_DIR, standin_command, start_model_server

pytestmark = pytest.mark.integration

MODELS = {
    task: (labels.split(","), size, threshold, positive)
    for task, labels, size, threshold, positive in TINY_MODELS
}
STROKE, TUMOR = "brain-stroke", "brain-tumor"
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END
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


def images(task: str, batch: int = 1, seed: int = 0) -> np.ndarray:
    size = MODELS[task][1]
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 1), dtype=np.uint8)


def predict_request(
    task: str, pixels: np.ndarray | None = None, version: int | None = None, signature: str = ""
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = task
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if pixels is not None:
        request.inputs[mc.INPUT_KEY].CopyFrom(tf.make_tensor_proto(pixels))
    return request


def info_request(task: str, output_filter=()) -> predict_pb2.PredictRequest:
    request = predict_request(task, signature=mc.INFO_SIGNATURE)
    request.inputs[mc.INFO_INPUT_KEY].CopyFrom(tf.make_tensor_proto(np.zeros(1, np.int32)))
    request.output_filter.extend(output_filter)
    return request


def status_request(task: str, version: int | None = None):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = task
    if version is not None:
        request.model_spec.version.value = version
    return request


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


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
    assert response.outputs[mc.PROBABILITIES_KEY].tensor_content  # the compact encoding


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


def get_json(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_rest_model_status(model_server):
    base = f"http://127.0.0.1:{model_server.rest_port}/v1/models"
    code, body = get_json(f"{base}/{STROKE}")
    assert code == 200
    assert body["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
    assert get_json(f"{base}/{STROKE}/versions/1")[0] == 200
    assert get_json(f"{base}/{STROKE}/versions/7")[0] == 404
    assert get_json(f"{base}/no-such-model")[0] == 404


def test_rest_metrics_count_requests(model_server, predict):
    url = f"http://127.0.0.1:{model_server.rest_port}/monitoring/prometheus/metrics"

    def stroke_ok_count() -> int:
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        line = ':tensorflow:serving:request_count{model_name="brain-stroke",status="OK"} '
        found = [row for row in text.splitlines() if row.startswith(line)]
        return int(found[0].split()[-1]) if found else 0

    before = stroke_ok_count()
    for _ in range(3):
        predict(predict_request(STROKE, images(STROKE)), timeout=30)
    assert stroke_ok_count() == before + 3


@pytest.fixture
def polling_server(tiny_models_root, tmp_path):
    """A server of its own over a copy of the models root, scanning disk every 0.3 s."""
    root = tmp_path / "models"
    shutil.copytree(tiny_models_root, root, ignore=shutil.ignore_patterns("*.config"))
    server = start_model_server(
        write_models_config(tmp_path / "models.config", root, [STROKE]), poll_seconds=0.3
    )
    yield server, root
    server.stop()


def test_new_version_is_picked_up_while_serving(polling_server):
    server, root = polling_server
    failures, stop = [], threading.Event()

    def keep_predicting():
        with grpc.insecure_channel(server.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not stop.is_set():
                try:
                    stub.Predict(predict_request(STROKE, images(STROKE)), timeout=30)
                except grpc.RpcError as err:
                    failures.append(err)

    client = threading.Thread(target=keep_predicting)
    client.start()
    try:
        staging = root / STROKE / ".staging-2"
        shutil.copytree(root / STROKE / "1", staging)
        staging.rename(root / STROKE / "2")  # atomic, as a deploy should do it
        statuses = wait_for_versions(server, {2: AVAILABLE, 1: END})
    finally:
        stop.set()
        client.join(60)
    assert statuses == {2: AVAILABLE, 1: END}
    assert failures == []
    with grpc.insecure_channel(server.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(predict_request(STROKE, images(STROKE)), timeout=30)
    assert response.model_spec.version.value == 2


def wait_for_versions(server, wanted: dict[int, int], timeout: float = 60.0) -> dict[int, int]:
    deadline, statuses = time.monotonic() + timeout, {}
    with grpc.insecure_channel(server.target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        while time.monotonic() < deadline and statuses != wanted:
            response = stub.GetModelStatus(status_request(STROKE), timeout=10)
            statuses = {v.version: v.state for v in response.model_version_status}
            time.sleep(0.2)
    return statuses


def test_a_taken_port_is_a_clear_error(model_server, tiny_models_config):
    command = standin_command(tiny_models_config, model_server.grpc_port, free_port(), 1)
    env = {**os.environ, "PYTHONPATH": str(MODEL_SERVER_DIR)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"cannot bind gRPC port {model_server.grpc_port}" in result.stderr


def test_sigterm_exits_cleanly(polling_server):
    server, _ = polling_server
    assert "All models AVAILABLE" in server.log()
    assert server.stop() == 0
    assert "Stopped" in server.log()


def test_grpc_channel_arguments_are_applied(tiny_models_config):
    grpc_port, rest_port = free_port(), free_port()
    command = [
        *standin_command(tiny_models_config, grpc_port, rest_port, 1),
        "--grpc_channel_arguments=grpc.max_receive_message_length=4096",
    ]
    server = start_model_server(tiny_models_config, grpc_port, rest_port, command=command)
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            small = stub.Predict(predict_request(STROKE, images(STROKE)), timeout=30)
            assert mc.PROBABILITIES_KEY in small.outputs
            error = rpc_error(stub.Predict, predict_request(STROKE, images(STROKE, 8)))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        assert server.stop() == 0
