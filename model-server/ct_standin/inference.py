"""Classify, Regress and MultiInference on tf.Example inputs, with TF Serving's checks and
messages (classifier.cc, regressor.cc, multi_inference.cc, util.cc).

A signature serves Classify only if its method_name is tensorflow/serving/classify, with one
input `inputs` (serialized tf.Examples) and outputs `classes` and/or `scores`; Regress likewise
with tensorflow/serving/regress and one output `outputs`.
"""

from __future__ import annotations

import grpc
import numpy as np
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    input_pb2,
    model_pb2,
    regression_pb2,
)

from ct_standin.errors import ServingError

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
DEFAULT_SIGNATURE = "serving_default"
INPUTS, CLASSES, SCORES, OUTPUTS = "inputs", "classes", "scores", "outputs"
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _invalid(message: str) -> ServingError:
    return ServingError(INVALID, message)


def serialized_examples(request_input: input_pb2.Input) -> np.ndarray:
    """The [N] string tensor of serialized Examples; with a context, context bytes + example
    bytes (the Example parser merges them, the example's features winning)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        items = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        listed = request_input.example_list_with_context
        context = listed.context.SerializeToString()
        items = [context + e.SerializeToString() for e in listed.examples]
    else:
        items = []
    if not items:
        raise _invalid("Input is empty.")
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def signature_def(servable, name: str) -> tuple[str, meta_graph_pb2.SignatureDef]:
    name = name or DEFAULT_SIGNATURE
    found = servable.signature_defs.get(name)
    if found is None:
        raise _invalid(f"No signature was found with the name: {name}")
    return name, found


def _debug(signature: meta_graph_pb2.SignatureDef) -> str:
    return text_format.MessageToString(signature)


def check_classify(signature: meta_graph_pb2.SignatureDef) -> None:
    if signature.method_name != CLASSIFY_METHOD:
        raise _invalid(
            f"Expected classification signature method_name to be {CLASSIFY_METHOD}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise _invalid("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise _invalid(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if INPUTS not in signature.inputs:
        raise _invalid(f"No classification inputs found in SignatureDef: {_debug(signature)}")
    if CLASSES not in signature.outputs and SCORES not in signature.outputs:
        raise _invalid(
            'Expected classification signature outputs to contain at least one of "classes" or '
            f'"scores". Signature was: {_debug(signature)}'
        )


def check_regress(signature: meta_graph_pb2.SignatureDef) -> None:
    if signature.method_name != REGRESS_METHOD:
        raise _invalid(
            f"Expected regression signature method_name to be {REGRESS_METHOD}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise _invalid("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise _invalid("Expected one output Tensor.")
    if INPUTS not in signature.inputs:
        raise _invalid(f"No regression inputs found in SignatureDef: {_debug(signature)}")
    if OUTPUTS not in signature.outputs:
        raise _invalid(f"No regression outputs found in SignatureDef: {_debug(signature)}")


def _shape(array: np.ndarray) -> str:
    return "[" + ",".join(str(n) for n in array.shape) + "]"


def _matrix(array: np.ndarray, what: str, kind: str, rows: int) -> np.ndarray:
    if array.ndim != 2:
        raise _invalid(f"Expected Tensor shape: [batch_size num_classes] but got {_shape(array)}")
    if array.dtype.kind != kind:
        raise _invalid(f"Expected {what} Tensor of {'DT_STRING' if kind == 'O' else 'DT_FLOAT'}.")
    if array.shape[0] != rows:
        raise _invalid(f"Expected {what} output batch size of {rows}. Got: {array.shape[0]}")
    return array


def classification_result(outputs: dict, rows: int) -> classification_pb2.ClassificationResult:
    classes = outputs.get(CLASSES)
    scores = outputs.get(SCORES)
    if classes is not None:
        classes = _matrix(np.asarray(classes, dtype=object), "classes", "O", rows)
    if scores is not None:
        scores = _matrix(np.asarray(scores), "scores", "f", rows)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise _invalid(
            "Tensors class and score should match in dim_size(1). "
            f"Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    width = (classes if classes is not None else scores).shape[1]
    result = classification_pb2.ClassificationResult()
    for row in range(rows):
        listed = result.classifications.add()
        for column in range(width):
            item = listed.classes.add()
            if classes is not None:
                item.label = classes[row, column]
            if scores is not None:
                item.score = float(scores[row, column])
    return result


def regression_result(outputs: dict, rows: int) -> regression_pb2.RegressionResult:
    values = np.asarray(outputs[OUTPUTS])
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise _invalid(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{_shape(values)}"
        )
    if values.dtype.kind != "f":
        raise _invalid("Expected output Tensor of DT_FLOAT.")
    if values.shape[0] != rows:
        raise _invalid(
            f"Input batch size did not match output batch size: {rows} vs. {values.shape[0]}"
        )
    result = regression_pb2.RegressionResult()
    for value in values.reshape(-1).tolist():
        result.regressions.add(value=value)
    return result


def _run(servable, name: str, examples: np.ndarray) -> dict:
    servable.signature(name)  # a signature the stand-in cannot run answers FAILED_PRECONDITION
    return servable.run(name, {INPUTS: examples})


def classify(servable, signature_name: str, request_input: input_pb2.Input):
    """(resolved signature name, ClassificationResult)."""
    name, signature = signature_def(servable, signature_name)
    check_classify(signature)
    examples = serialized_examples(request_input)
    return name, classification_result(_run(servable, name, examples), len(examples))


def regress(servable, signature_name: str, request_input: input_pb2.Input):
    """(resolved signature name, RegressionResult)."""
    name, signature = signature_def(servable, signature_name)
    check_regress(signature)
    examples = serialized_examples(request_input)
    return name, regression_result(_run(servable, name, examples), len(examples))


def check_tasks(request: inference_pb2.MultiInferenceRequest) -> str:
    """The one model name every task asks for; TF Serving's errors otherwise."""
    if not request.tasks:
        raise _invalid("Tasks field is empty.")
    names = set()
    for task in request.tasks:
        if not task.model_spec.name:
            raise _invalid("Found ModelSpec with an empty model name.")
        names.add(task.model_spec.name)
    if len(names) > 1:
        raise _invalid("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
    return names.pop()


def multi_inference(
    servable, version: int, request: inference_pb2.MultiInferenceRequest
) -> inference_pb2.MultiInferenceResponse:
    model = check_tasks(request)
    seen: dict[str, str] = {}  # signature name -> its input tensor name
    for task in request.tasks:
        name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if name in seen:
            raise _invalid(f"Duplicate evaluation of signature: {name}")
        signature = servable.signature_defs.get(name)
        if signature is None:
            raise _invalid(f"Requested signature not found in model graph: {name}")
        if task.method_name == REGRESS_METHOD:
            check_regress(signature)
        elif task.method_name == CLASSIFY_METHOD:
            check_classify(signature)
        else:
            raise ServingError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"Unsupported signature method_name: {task.method_name}",
            )
        seen[name] = signature.inputs[INPUTS].name
        if len(set(seen.values())) > 1:
            raise _invalid("Input tensor must be the same for all Signatures.")
    examples = serialized_examples(request.input)
    response = inference_pb2.MultiInferenceResponse()
    for task in request.tasks:
        name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        result = response.results.add()
        result.model_spec.CopyFrom(model_spec(model, version, name))
        outputs = _run(servable, name, examples)
        if task.method_name == REGRESS_METHOD:
            result.regression_result.CopyFrom(regression_result(outputs, len(examples)))
        else:
            result.classification_result.CopyFrom(classification_result(outputs, len(examples)))
    return response


def model_spec(name: str, version: int, signature_name: str) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    spec.version.value = version
    return spec
