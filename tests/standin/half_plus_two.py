"""TF Serving's documented test model, built here: y = 0.5 x + 2 (TF1 SavedModel) with
- serving_default (predict): input `x` float [None], output `y`;
- classify_x_to_y (classify): serialized tf.Examples with feature `x` -> `scores` = y;
- regress_x_to_y (regress): serialized tf.Examples with feature `x` -> `outputs` = y;
- regress_x_to_y_strings (regress) with a string output, to be refused;
- x_and_label (predict): `x` and a DT_STRING input `label_bytes` echoed as `echo_bytes`."""

from __future__ import annotations

from pathlib import Path

NAME = "half_plus_two"


def half_plus_two(x):
    return [0.5 * value + 2 for value in x]


def build(base: Path, version: int = 1) -> Path:
    """Write the SavedModel under base/<version>; returns base."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as session:
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        parsed = v1.io.parse_example(serialized, {"x": v1.io.FixedLenFeature([1], tf.float32)})
        y_examples = tf.add(0.5 * parsed["x"], 2.0, name="y_examples")
        x = v1.placeholder(tf.float32, [None], name="x")
        y = tf.add(0.5 * x, 2.0, name="y")
        label = v1.placeholder(tf.string, [None], name="label")
        sig = v1.saved_model.signature_def_utils
        signatures = {
            "serving_default": sig.predict_signature_def({"x": x}, {"y": y}),
            "classify_x_to_y": sig.classification_signature_def(serialized, None, y_examples),
            "regress_x_to_y": sig.regression_signature_def(serialized, y_examples),
            "regress_x_to_y_strings": sig.build_signature_def(
                {"inputs": v1.saved_model.build_tensor_info(serialized)},
                {"outputs": v1.saved_model.build_tensor_info(tf.strings.as_string(y_examples))},
                "tensorflow/serving/regress",
            ),
            "x_and_label": sig.predict_signature_def(
                {"x": x, "label_bytes": label},
                {"y": y, "echo_bytes": tf.identity(label)},
            ),
        }
        builder = v1.saved_model.Builder(str(base / str(version)))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
        builder.save()
    return base


def serve(base: Path, tensor_content: bool = False, config: Path | None = None):
    """The stand-in's gRPC and REST servers over this model (or the models of `config`), in this
    process, on free loopback ports: (grpc target, rest base url, stop)."""
    from ct_local.ports import free_port
    from ct_standin.config import ModelConfig, load_models
    from ct_standin.grpc_service import build_server
    from ct_standin.metrics import Metrics
    from ct_standin.registry import Registry
    from ct_standin.rest import start_rest_server
    from ct_standin.servable import load_servable

    models = load_models(config) if config else [ModelConfig(NAME, base)]
    registry = Registry(models, lambda n, v, p: load_servable(n, v, p, False))
    registry.load(registry.plan())
    metrics = Metrics()
    port = free_port()
    server = build_server(registry, metrics, port, host="127.0.0.1", tensor_content=tensor_content)
    server.start()
    rest = start_rest_server(registry, metrics, free_port(), host="127.0.0.1")

    def stop() -> None:
        server.stop(None)
        rest.shutdown()

    return f"127.0.0.1:{port}", f"http://127.0.0.1:{rest.server_address[1]}", stop
