"""Requests to the stand-in over the real tensorflow_serving protos, shared by its process tests:
the tiny models' facts, seeded images, Predict / model_info / GetModelStatus requests."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

from ct_contract import signatures as mc
from tests.fixtures.common import TINY_MODELS

MODELS = {
    task: (labels.split(","), size, threshold, positive)
    for task, labels, size, threshold, positive in TINY_MODELS
}
STROKE, TUMOR = "brain-stroke", "brain-tumor"
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


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
