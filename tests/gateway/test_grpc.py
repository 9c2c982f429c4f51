"""gateway/tfs/client.py and gateway/models/registry.py against an in-process fake model server."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest

from ct_contract import signatures as mc
from gateway.config import Settings
from gateway.errors import ApiError
from gateway.models.registry import (
    ModelContractError,
    ModelRegistry,
    parse_input,
    signature_defs,
)
from gateway.tfs import tfs_api_pb2 as pb
from gateway.tfs.client import TfsClient
from gateway.tfs.tensors import make_ndarray
from tests.fixtures.gateway import FakeModel

# Every gRPC failure code and the HTTP status the gateway answers with.
EXPECTED_STATUS = {
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 503,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 502,
    grpc.StatusCode.FAILED_PRECONDITION: 502,
}


def settings_for(target: str, **overrides) -> Settings:
    return Settings(models=("brain-stroke", "brain-tumor"), default_task="brain-stroke",
                    model_server=target, **overrides)  # fmt: skip


@pytest.fixture
def client(fake_model_server):
    client = TfsClient(settings_for(fake_model_server.target, grpc_deadline_s=2.0))
    yield client
    client.close()


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c != grpc.StatusCode.OK])
def test_every_grpc_error_maps_to_an_http_status(fake_model_server, client, code) -> None:
    # UNAVAILABLE is retried once: make both attempts fail.
    fake_model_server.fail_next("GetModelStatus", code, code)
    with pytest.raises(ApiError) as caught:
        client.status("brain-stroke")
    error = caught.value
    assert error.status == EXPECTED_STATUS.get(code, 502)
    assert code.name in error.message
    if error.status == 503:
        assert error.headers == {"Retry-After": "1"}


def test_unavailable_is_retried_once(fake_model_server, client) -> None:
    fake_model_server.fail_next("GetModelStatus", grpc.StatusCode.UNAVAILABLE)
    response = client.status("brain-stroke")
    assert response.model_version_status[0].state == pb.ModelVersionStatus.AVAILABLE
    assert [c[0] for c in fake_model_server.calls] == ["GetModelStatus"] * 2


def test_other_errors_are_not_retried(fake_model_server, client) -> None:
    fake_model_server.fail_next("GetModelStatus", grpc.StatusCode.INTERNAL)
    with pytest.raises(ApiError):
        client.status("brain-stroke")
    assert len(fake_model_server.calls) == 1


def test_a_slow_server_hits_the_deadline(fake_model_server) -> None:
    fake_model_server.delay_s = 1.0
    client = TfsClient(settings_for(fake_model_server.target, grpc_deadline_s=0.2))
    with pytest.raises(ApiError) as caught:
        client.status("brain-stroke")
    assert caught.value.status == 504
    client.close()


def test_dead_server_is_503() -> None:
    from tests.fixtures.common import free_port

    client = TfsClient(settings_for(f"127.0.0.1:{free_port()}", grpc_deadline_s=2.0))
    with pytest.raises(ApiError) as caught:
        client.status("brain-stroke")
    assert caught.value.status == 503
    client.close()


def test_unknown_model_is_404(client) -> None:
    with pytest.raises(ApiError) as caught:
        client.metadata("no-such-model")
    assert caught.value.status == 404


def test_predict_sends_uint8_tensor_content(fake_model_server, client) -> None:
    image = np.arange(32 * 32, dtype=np.uint8).reshape(1, 32, 32, 1)
    response = client.predict("brain-stroke", {mc.INPUT_KEY: image}, mc.PREDICT_SIGNATURE)
    sent = fake_model_server.requests[-1]
    assert sent.model_spec.signature_name == mc.PREDICT_SIGNATURE
    assert sent.inputs[mc.INPUT_KEY].dtype == pb.DT_UINT8
    assert sent.inputs[mc.INPUT_KEY].tensor_content == image.tobytes()
    np.testing.assert_allclose(make_ndarray(response.outputs[mc.PROBABILITIES_KEY]), [[0.55, 0.45]])


def test_one_channel_per_process(client) -> None:
    client.status("brain-stroke")
    first = client._channel
    client.status("brain-tumor")
    assert client._channel is first


# ----------------------------------------------------------------------------- metadata parsing


def test_registry_reads_the_model_contract(client) -> None:
    registry = ModelRegistry(client, ttl_s=30)
    stroke = registry.get("brain-stroke")
    assert (stroke.version, stroke.input_shape, stroke.input_dtype) == (1, [32, 32, 1], np.uint8)
    assert stroke.labels == ("Normal", "Stroke")
    assert (stroke.threshold, stroke.positive_index, stroke.binary) == (
        pytest.approx(0.4),
        1,
        True,
    )
    tumor = registry.get("brain-tumor")
    assert tumor.input_shape == [48, 48, 3] and len(tumor.labels) == 7
    assert (tumor.threshold, tumor.positive_index, tumor.binary) == (None, None, False)


def test_registry_caches_until_the_ttl(fake_model_server, client) -> None:
    now = [0.0]
    registry = ModelRegistry(client, ttl_s=30, clock=lambda: now[0])
    registry.get("brain-stroke")
    registry.get("brain-stroke")
    assert _count(fake_model_server, "GetModelMetadata") == 1
    now[0] = 31.0
    registry.get("brain-stroke")
    assert _count(fake_model_server, "GetModelMetadata") == 2


def test_registry_follows_a_new_version(fake_model_server, client) -> None:
    registry = ModelRegistry(client, ttl_s=300)
    assert registry.get("brain-stroke").version == 1
    new = FakeModel(version=2, labels=("Healthy", "Bleed"))
    fake_model_server.models["brain-stroke"].append(new)
    v2 = registry.for_version("brain-stroke", 2)
    assert (v2.version, v2.labels) == (2, ("Healthy", "Bleed"))
    assert registry.for_version("brain-stroke", 1).labels == ("Normal", "Stroke")
    assert registry.get("brain-stroke").version == 2  # the version change expired the cache


def test_registry_refreshes_once_under_concurrency(fake_model_server, client) -> None:
    registry = ModelRegistry(client, ttl_s=30)
    fake_model_server.delay_s = 0.05
    threads = [threading.Thread(target=registry.get, args=("brain-stroke",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _count(fake_model_server, "GetModelMetadata") == 1


def test_signature_def_map_type_is_checked() -> None:
    response = pb.GetModelMetadataResponse()
    response.metadata["signature_def"].type_url = "type.googleapis.com/something.Else"
    with pytest.raises(ModelContractError, match="something.Else"):
        signature_defs(response)
    with pytest.raises(ModelContractError, match="no signature_def"):
        signature_defs(pb.GetModelMetadataResponse())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"size": 0}, "shape"),
        ({"channels": 2}, "shape"),
        ({"input_dtype": pb.DT_STRING}, "dtype"),
    ],
)
def test_models_breaking_the_contract_are_refused(change, message) -> None:
    sigs = FakeModel(**change).signature_def_map()
    with pytest.raises(ModelContractError, match=message):
        parse_input(dict(sigs.signature_def))


def test_label_count_must_match_outputs(fake_model_server, client) -> None:
    fake_model_server.models["brain-stroke"] = [FakeModel(labels=("a", "b", "c"))]
    model = fake_model_server.models["brain-stroke"][0]
    sigs = model.signature_def_map()
    sigs.signature_def[mc.PREDICT_SIGNATURE].outputs[mc.PROBABILITIES_KEY].tensor_shape.dim[
        1
    ].size = 2
    model.signature_def_map = lambda: sigs
    with pytest.raises(ModelContractError, match="2 classes"):
        ModelRegistry(client, ttl_s=30).get("brain-stroke")


def _count(server, method: str) -> int:
    return sum(1 for c in server.calls if c[0] == method)
