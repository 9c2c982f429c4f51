"""TF Serving's gRPC API over the registry: PredictionService and ModelService."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent import futures

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from ct_standin import inference
from ct_standin.errors import ServingError
from ct_standin.metrics import Metrics
from ct_standin.registry import Registry
from ct_standin.tensors import to_tensor_proto

log = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"
# TF Serving sets no practical message size limit (INT32_MAX) unless told otherwise.
DEFAULT_MAX_MESSAGE_BYTES = 2**31 - 1
STATE_CODES = get_model_status_pb2.ModelVersionStatus.State


def _spec_version(spec: model_pb2.ModelSpec) -> int | None:
    return spec.version.value if spec.HasField("version") else None


class _Handler:
    """Runs one RPC: maps ServingError (and any surprise) to a status and records metrics."""

    def __init__(self, registry: Registry, metrics: Metrics, tensor_content: bool = False) -> None:
        self.registry = registry
        self.metrics = metrics
        self.tensor_content = tensor_content  # --enable_serialization_as_tensor_content

    def resolve(self, spec: model_pb2.ModelSpec) -> tuple[int, object]:
        return self.registry.resolve(spec.name, _spec_version(spec), spec.version_label)

    def run(self, api: str, spec: model_pb2.ModelSpec, context, body: Callable, named: bool = True):
        started = time.perf_counter()
        status = grpc.StatusCode.OK
        try:
            if named and not spec.name:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec name")
            return body()
        except ServingError as err:
            status = err.code
            context.abort(err.code, err.message)
        except Exception as err:  # never let a request take the server down
            log.exception("%s failed for model %s", api, spec.name)
            status = grpc.StatusCode.INTERNAL
            context.abort(grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}")
        finally:
            # Only configured names become metric labels: clients must not invent series.
            model = spec.name if spec.name in self.registry.names else ""
            self.metrics.record(model, api, status.name, time.perf_counter() - started)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer, _Handler):
    def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:
        spec = request.model_spec

        def body():
            version, servable = self.resolve(spec)
            signature, outputs = servable.predict(
                request.inputs, spec.signature_name, list(request.output_filter)
            )
            response = predict_pb2.PredictResponse()
            response.model_spec.name = spec.name
            response.model_spec.version.value = version
            response.model_spec.signature_name = signature
            for alias, array in outputs.items():
                response.outputs[alias].CopyFrom(to_tensor_proto(array, self.tensor_content))
            return response

        return self.run("predict", spec, context, body)

    def Classify(
        self, request: classification_pb2.ClassificationRequest, context
    ) -> classification_pb2.ClassificationResponse:
        spec = request.model_spec

        def body():
            version, servable = self.resolve(spec)
            name, result = inference.classify(servable, spec.signature_name, request.input)
            response = classification_pb2.ClassificationResponse(result=result)
            response.model_spec.CopyFrom(inference.model_spec(spec.name, version, name))
            return response

        return self.run("classify", spec, context, body)

    def Regress(
        self, request: regression_pb2.RegressionRequest, context
    ) -> regression_pb2.RegressionResponse:
        spec = request.model_spec

        def body():
            version, servable = self.resolve(spec)
            name, result = inference.regress(servable, spec.signature_name, request.input)
            response = regression_pb2.RegressionResponse(result=result)
            response.model_spec.CopyFrom(inference.model_spec(spec.name, version, name))
            return response

        return self.run("regress", spec, context, body)

    def MultiInference(
        self, request: inference_pb2.MultiInferenceRequest, context
    ) -> inference_pb2.MultiInferenceResponse:
        spec = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()

        def body():
            inference.check_tasks(request)  # before the model: TF Serving's own order
            version, servable = self.resolve(spec)
            return inference.multi_inference(servable, version, request)

        return self.run("multi_inference", spec, context, body, named=False)

    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        spec = request.model_spec

        def body():
            fields = list(request.metadata_field)
            if not fields:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "GetModelMetadataRequest must specify at least one metadata_field",
                )
            for field in fields:
                if field != SIGNATURE_DEF_FIELD:
                    raise ServingError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"Metadata field {field} is not supported",
                    )
            version, servable = self.resolve(spec)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, signature in servable.signature_defs.items():
                signature_map.signature_def[key].CopyFrom(signature)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = spec.name
            response.model_spec.version.value = version
            response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
            return response

        return self.run("get_model_metadata", spec, context, body)


class ModelService(model_service_pb2_grpc.ModelServiceServicer, _Handler):
    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context
    ) -> get_model_status_pb2.GetModelStatusResponse:
        spec = request.model_spec

        def body():
            version = _spec_version(spec)
            if spec.version_label:
                version, _ = self.registry.resolve(spec.name, label=spec.version_label)
            response = get_model_status_pb2.GetModelStatusResponse()
            for number, state in self.registry.status(spec.name, version):
                status = response.model_version_status.add(
                    version=number, state=STATE_CODES.Value(state.state)
                )
                status.status.SetInParent()  # error_code OK, error_message "", as TF Serving
                if state.error:
                    status.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
                    status.status.error_message = state.error
            return response

        return self.run("get_model_status", spec, context, body)


def build_server(
    registry: Registry,
    metrics: Metrics,
    port: int,
    channel_args: list[tuple[str, object]] = (),
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    host: str = "0.0.0.0",
    tensor_content: bool = False,
) -> grpc.Server:
    """A gRPC server bound to `port`, not yet started; OSError if the port is taken."""
    options = {
        "grpc.max_send_message_length": max_message_bytes,
        "grpc.max_receive_message_length": max_message_bytes,
        # grpcio turns SO_REUSEPORT on by default, which lets two servers share a port silently.
        "grpc.so_reuseport": 0,
    }
    options.update(channel_args)  # --grpc_channel_arguments override the defaults
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=list(options.items()))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(registry, metrics, tensor_content), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(registry, metrics), server
    )
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as err:  # grpcio raises where older versions returned 0
        raise OSError(f"cannot bind gRPC port {port}: is another server using it?") from err
    if bound == 0:
        raise OSError(f"cannot bind gRPC port {port}: is another server using it?")
    return server
