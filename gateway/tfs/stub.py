"""Hand-written gRPC stubs for the TF Serving methods the gateway calls (the client side; the
server side that tests' fake model servers use is tests/fixtures/tfs_handlers.py).

The messages are our wire-compatible cttriage.tfs subset; the method paths are TF Serving's own,
so a real tensorflow_model_server and the local stand-in both answer them.
"""

from __future__ import annotations

import grpc

from gateway.tfs import tfs_api_pb2 as pb

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
PREDICT = f"/{PREDICTION_SERVICE}/Predict"
GET_MODEL_METADATA = f"/{PREDICTION_SERVICE}/GetModelMetadata"
GET_MODEL_STATUS = f"/{MODEL_SERVICE}/GetModelStatus"


def _method(channel: grpc.Channel, path: str, request_cls: type, response_cls: type):
    return channel.unary_unary(
        path,
        request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString,
    )


class PredictionServiceStub:
    """Client side of tensorflow.serving.PredictionService (Predict, GetModelMetadata)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Predict = _method(channel, PREDICT, pb.PredictRequest, pb.PredictResponse)
        self.GetModelMetadata = _method(
            channel, GET_MODEL_METADATA, pb.GetModelMetadataRequest, pb.GetModelMetadataResponse
        )


class ModelServiceStub:
    """Client side of tensorflow.serving.ModelService (GetModelStatus)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.GetModelStatus = _method(
            channel, GET_MODEL_STATUS, pb.GetModelStatusRequest, pb.GetModelStatusResponse
        )
