"""The stand-in model server as a process: REST status and metrics, new versions picked up while
serving, a taken port, SIGTERM, gRPC channel arguments."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from ct_contract import signatures as mc
from ct_local.standin import standin_command, start_model_server
from tests.fixtures.common import free_port, write_models_config
from tests.standin.grpc_requests import (
    AVAILABLE,
    END,
    STROKE,
    images,
    predict_request,
    rpc_error,
    status_request,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def predict(model_server):
    with grpc.insecure_channel(model_server.target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict


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
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
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
