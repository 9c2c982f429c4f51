"""JSON <-> tensors and tf.Examples for TF Serving's REST API (its json_tensor.cc, documented at
tensorflow.org/tfx/serving/api_rest): predict in row (`instances`) and columnar (`inputs`)
formats, binary as {"b64": ...}, and the Examples of :classify / :regress."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from ct_standin.errors import ServingError

B64 = "b64"
BYTES_SUFFIX = "_bytes"  # DT_STRING outputs named so are answered as {"b64": ...}


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _is_b64(value: object) -> bool:
    return isinstance(value, dict) and len(value) == 1 and B64 in value


def _b64decode(value: dict) -> bytes:
    try:
        return base64.b64decode(value[B64], validate=True)
    except (binascii.Error, TypeError) as err:
        raise _invalid(f"Unable to base64 decode: {err}") from err


def _strings(value: object) -> object:
    """Nested lists with every string or {"b64": ...} turned into bytes."""
    if _is_b64(value):
        return _b64decode(value)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):
        return [_strings(item) for item in value]
    raise _invalid(f"Expected a string or a base64 object, got JSON {type(value).__name__}")


def to_array(value: object, spec: tf.TensorSpec, name: str) -> np.ndarray:
    """A JSON value (scalar or nested lists) as a tensor of the signature input's dtype."""
    try:
        if spec.dtype == tf.string:
            array = np.array(_strings(value), dtype=object)
        else:
            array = np.array(value, dtype=spec.dtype.as_numpy_dtype)
    except (ValueError, TypeError, OverflowError) as err:
        raise _invalid(f"Failed to process input {name}: {err}") from err
    if _ragged(array):
        raise _invalid(f"Failed to process input {name}: lists of different lengths")
    return array


def _ragged(array: np.ndarray) -> bool:
    return array.dtype == object and any(isinstance(v, list) for v in array.flat)


def predict_inputs(
    body: Mapping, specs: Mapping[str, tf.TensorSpec]
) -> tuple[dict[str, np.ndarray], bool]:
    """The request's input tensors and whether it was row format (`instances`)."""
    if "instances" in body and "inputs" in body:
        raise _invalid(
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"
        )
    if "instances" in body:
        return _rows(body["instances"], specs), True
    if "inputs" in body:
        return _columns(body["inputs"], specs), False
    raise _invalid("Missing 'inputs' or 'instances' key")


def _rows(instances: object, specs: Mapping[str, tf.TensorSpec]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise _invalid("Excepting 'instances' to be an list/array")
    if not instances:
        raise _invalid("No values in 'instances' array")
    names = sorted(specs)
    columns: dict[str, list] = {name: [] for name in names}
    for index, item in enumerate(instances):
        if isinstance(item, dict) and not _is_b64(item):
            if sorted(item) != names:
                raise _invalid(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{item} must only have keys: {','.join(names)}"
                )
            for name in names:
                columns[name].append(item[name])
        elif len(names) > 1:
            raise _invalid(f"Expecting object but got list at item {index} of input list")
        else:
            columns[names[0]].append(item)
    return {name: to_array(columns[name], specs[name], name) for name in names}


def _columns(inputs: object, specs: Mapping[str, tf.TensorSpec]) -> dict[str, np.ndarray]:
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(specs) > 1:
            raise _invalid(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        (name,) = specs
        return {name: to_array(inputs, specs[name], name)}
    for name in specs:
        if name not in inputs:
            raise _invalid(f"Missing named input: {name} in 'inputs' object.")
    return {name: to_array(inputs[name], spec, name) for name, spec in specs.items()}


def _json_value(name: str, array: np.ndarray) -> object:
    if array.dtype == object or array.dtype.kind == "S":
        if name.endswith(BYTES_SUFFIX):
            convert = lambda v: {B64: base64.b64encode(v).decode()}  # noqa: E731
        else:
            convert = lambda v: v.decode(errors="replace")  # noqa: E731
        return np.vectorize(convert, otypes=[object])(array).tolist() if array.size else []
    if array.dtype == np.float32:  # float32's shortest digits, as TF Serving writes them
        return np.vectorize(lambda v: float(repr(v)), otypes=[object])(array).tolist()
    return array.tolist()


def predict_json(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict:
    """{"predictions": [...]} (row) or {"outputs": ...} (columnar); a single output is unnamed."""
    if not row_format:
        values = {name: _json_value(name, array) for name, array in outputs.items()}
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    sizes = {name: (array.shape[0] if array.ndim else None) for name, array in outputs.items()}
    batch = next(iter(sizes.values()), 0)
    for name, size in sizes.items():
        if size is None or size != batch:
            raise _invalid(
                f"Tensor name: {name} has inconsistent batch size: {size} expecting: {batch}"
            )
    values = {name: _json_value(name, array) for name, array in outputs.items()}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{name: v[row] for name, v in values.items()} for row in range(batch)]}


# --- :classify and :regress ---------------------------------------------------------------------


def _add_feature_value(feature: feature_pb2.Feature, name: str, value: object) -> None:
    if isinstance(value, int):  # bools too: TF Serving makes them 0/1
        kind, item = "int64_list", int(value)
    elif isinstance(value, float):
        kind, item = "float_list", value
    elif isinstance(value, str) or _is_b64(value):
        kind, item = "bytes_list", _b64decode(value) if _is_b64(value) else value.encode()
    else:
        raise _invalid(
            f"Feature: {name} has element with unexpected JSON type: {type(value).__name__}"
        )
    current = feature.WhichOneof("kind")
    if current not in (None, kind):
        expected = {"int64_list": "int64", "float_list": "float", "bytes_list": "bytes"}[current]
        raise _invalid(f"Unexpected element type in feature: {name} expecting type: {expected}")
    getattr(feature, kind).value.append(item)


def example(value: object) -> example_pb2.Example:
    if not isinstance(value, dict):
        raise _invalid(f"Example must be JSON object but got JSON {type(value).__name__}")
    made = example_pb2.Example()
    for name, content in value.items():
        feature = made.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(feature, name, item)
    return made


def examples_input(body: Mapping) -> input_pb2.Input:
    """The Input of a :classify / :regress body: `examples`, and an optional `context`."""
    examples = body.get("examples")
    if examples is None:
        raise _invalid("When method is classify, key 'examples' is expected and was not found")
    if not isinstance(examples, list):
        raise _invalid("Expecting 'examples' value to be an list/array")
    if not examples:
        raise _invalid("'examples' value is an empty array")
    made = input_pb2.Input()
    if "context" in body:
        listed = made.example_list_with_context
        listed.context.CopyFrom(example(body["context"]))
    else:
        listed = made.example_list
    listed.examples.extend(example(item) for item in examples)
    return made


def classify_json(result: classification_pb2.ClassificationResult) -> dict:
    return {
        "result": [
            [[c.label, c.score] for c in listed.classes] for listed in result.classifications
        ]
    }


def regress_json(result: regression_pb2.RegressionResult) -> dict:
    return {"result": [r.value for r in result.regressions]}
