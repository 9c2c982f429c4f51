"""TF Serving's own Python client (tensorflow-serving-api stubs, written like its example/
clients) against the stand-in serving the y = 0.5 x + 2 model: the documented answers."""

from __future__ import annotations

import grpc
import pytest

from tests.standin.half_plus_two import NAME, build, half_plus_two, serve

pytestmark = pytest.mark.slow  # TensorFlow in this process

X = [1.0, 2.0, 5.0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build(tmp_path_factory.mktemp("models") / NAME)


@pytest.fixture(scope="module")
def stubs(model_dir):
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    target, _, stop = serve(model_dir)
    with grpc.insecure_channel(target) as channel:
        yield (
            prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel),
        )
    stop()


def predict_request(signature: str = ""):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    request.model_spec.signature_name = signature
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(X, shape=[len(X)]))
    return request


def examples_request(kind: str, signature: str, context: bool = False):
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    request = (
        classification_pb2.ClassificationRequest()
        if kind == "classify"
        else regression_pb2.RegressionRequest()
    )
    request.model_spec.name = NAME
    request.model_spec.signature_name = signature
    if context:  # x comes from each example; the context holds a feature nobody reads
        listed = request.input.example_list_with_context
        listed.context.features.feature["unused"].int64_list.value.append(1)
    else:
        listed = request.input.example_list
    for value in X:
        listed.examples.add().features.feature["x"].float_list.value.append(value)
    return request


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


def test_predict_answers_in_float_val_by_default(stubs):
    response = stubs[0].Predict(predict_request(), timeout=30)
    y = response.outputs["y"]
    assert list(y.float_val) == half_plus_two(X) and not y.tensor_content
    assert [d.size for d in y.tensor_shape.dim] == [3]
    assert response.model_spec.signature_name == "serving_default"
    assert response.model_spec.version.value == 1


def test_predict_answers_in_tensor_content_behind_the_flag(model_dir):
    import numpy as np
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    target, _, stop = serve(model_dir, tensor_content=True)
    try:
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            y = stub.Predict(predict_request(), timeout=30).outputs["y"]
    finally:
        stop()
    assert not y.float_val
    assert np.frombuffer(y.tensor_content, "<f4").tolist() == half_plus_two(X)


def test_string_outputs_answer_in_string_val(stubs):
    import tensorflow as tf

    request = predict_request("x_and_label")
    request.inputs["label_bytes"].CopyFrom(tf.make_tensor_proto([b"a", b"\xff", b"c"]))
    echo = stubs[0].Predict(request, timeout=30).outputs["echo_bytes"]
    assert list(echo.string_val) == [b"a", b"\xff", b"c"]


@pytest.mark.parametrize("context", [False, True])
def test_classify_answers_a_class_per_score(stubs, context):
    request = examples_request("classify", "classify_x_to_y", context)
    response = stubs[0].Classify(request, timeout=30)
    listed = response.result.classifications
    scores = [[(c.label, c.score) for c in item.classes] for item in listed]
    assert scores == [[("", y)] for y in half_plus_two(X)]
    assert response.model_spec.name == NAME
    assert response.model_spec.signature_name == "classify_x_to_y"
    assert response.model_spec.version.value == 1


@pytest.mark.parametrize("context", [False, True])
def test_regress_answers_a_value_per_example(stubs, context):
    response = stubs[0].Regress(examples_request("regress", "regress_x_to_y", context), timeout=30)
    assert [r.value for r in response.result.regressions] == half_plus_two(X)
    assert response.model_spec.signature_name == "regress_x_to_y"


def test_multi_inference_runs_classify_and_regress_on_the_same_examples(stubs):
    from tensorflow_serving.apis import inference_pb2

    request = inference_pb2.MultiInferenceRequest()
    for signature, method in [
        ("classify_x_to_y", "tensorflow/serving/classify"),
        ("regress_x_to_y", "tensorflow/serving/regress"),
    ]:
        task = request.tasks.add(method_name=method)
        task.model_spec.name = NAME
        task.model_spec.signature_name = signature
    request.input.CopyFrom(examples_request("regress", "").input)
    results = stubs[0].MultiInference(request, timeout=30).results
    assert [r.model_spec.signature_name for r in results] == ["classify_x_to_y", "regress_x_to_y"]
    assert [c.classes[0].score for c in results[0].classification_result.classifications] == (
        half_plus_two(X)
    )
    assert [r.value for r in results[1].regression_result.regressions] == half_plus_two(X)


@pytest.mark.parametrize(
    ("kind", "signature", "message"),
    [
        (
            "classify",
            "",  # serving_default is a predict signature
            "Expected classification signature method_name to be tensorflow/serving/classify. "
            "Was: tensorflow/serving/predict",
        ),
        (
            "classify",
            "regress_x_to_y",
            "Expected classification signature method_name to be tensorflow/serving/classify. "
            "Was: tensorflow/serving/regress",
        ),
        (
            "regress",
            "classify_x_to_y",
            "Expected regression signature method_name to be tensorflow/serving/regress. "
            "Was: tensorflow/serving/classify",
        ),
        ("regress", "nope", "No signature was found with the name: nope"),
        ("regress", "regress_x_to_y_strings", "Expected output Tensor of DT_FLOAT."),
    ],
)
def test_classify_and_regress_refuse_other_signatures(stubs, kind, signature, message):
    call = stubs[0].Classify if kind == "classify" else stubs[0].Regress
    error = rpc_error(call, examples_request(kind, signature))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == message


def test_empty_input_and_bad_multi_inference_tasks_are_refused(stubs):
    from tensorflow_serving.apis import inference_pb2, regression_pb2

    empty = regression_pb2.RegressionRequest()
    empty.model_spec.name = NAME
    empty.model_spec.signature_name = "regress_x_to_y"
    assert rpc_error(stubs[0].Regress, empty).details() == "Input is empty."

    request = inference_pb2.MultiInferenceRequest()
    assert rpc_error(stubs[0].MultiInference, request).details() == "Tasks field is empty."
    for _ in range(2):
        task = request.tasks.add(method_name="tensorflow/serving/regress")
        task.model_spec.name = NAME
        task.model_spec.signature_name = "regress_x_to_y"
    request.input.CopyFrom(examples_request("regress", "").input)
    error = rpc_error(stubs[0].MultiInference, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Duplicate evaluation of signature: regress_x_to_y"
    request.tasks[1].method_name = "tensorflow/serving/predict"
    request.tasks[1].model_spec.signature_name = "serving_default"
    error = rpc_error(stubs[0].MultiInference, request)
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == "Unsupported signature method_name: tensorflow/serving/predict"


def test_get_model_status_fills_status(stubs):
    from tensorflow_serving.apis import get_model_status_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = NAME
    (version,) = stubs[1].GetModelStatus(request, timeout=30).model_version_status
    assert version.version == 1
    assert version.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert version.HasField("status")
    assert version.status.error_code == 0 and version.status.error_message == ""
