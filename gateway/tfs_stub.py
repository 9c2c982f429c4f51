"""Hand-written gRPC stubs for the TF Serving methods the gateway calls.

The messages are our wire-compatible cttriage.tfs subset; the method paths are TF Serving's own,
so a real tensorflow_model_server and the local stand-in both answer them.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from gateway import tfs_api_pb2 as pb

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


# TEMPORARY duplicate of tests/fixtures/tfs_handlers.py (their home: test-only server side) until
# tests/fixtures/gateway.py imports them from there; then delete from here to the end of the file.
Handler = Callable[[object, grpc.ServicerContext], object]


def prediction_service_handler(
    predict: Handler, get_model_metadata: Handler
) -> grpc.GenericRpcHandler:
    """Server side of PredictionService from two plain functions (request, context) -> response."""
    return grpc.method_handlers_generic_handler(
        PREDICTION_SERVICE,
        {
            "Predict": _unary(predict, pb.PredictRequest, pb.PredictResponse),
            "GetModelMetadata": _unary(
                get_model_metadata, pb.GetModelMetadataRequest, pb.GetModelMetadataResponse
            ),
        },
    )


def model_service_handler(get_model_status: Handler) -> grpc.GenericRpcHandler:
    """Server side of ModelService.GetModelStatus from a plain function."""
    return grpc.method_handlers_generic_handler(
        MODEL_SERVICE,
        {
            "GetModelStatus": _unary(
                get_model_status, pb.GetModelStatusRequest, pb.GetModelStatusResponse
            )
        },
    )


def _unary(fn: Handler, request_cls: type, response_cls: type) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        fn,
        request_deserializer=request_cls.FromString,
        response_serializer=response_cls.SerializeToString,
    )
