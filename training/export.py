"""Export a trained Keras model as a self-describing TF Serving SavedModel version.

Layout written: <models_root>/<task>/<version>/{saved_model.pb, variables/, assets.extra/
tf_serving_warmup_requests, model_card.md}. The signatures follow gateway/model_contract.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tensorflow as tf

from gateway import model_contract as mc

WARMUP_FILE = "tf_serving_warmup_requests"
WARMUP_BATCH_SIZES = (1, 4)


def next_version(task_dir: Path) -> int:
    """The next integer version directory under a task's model folder."""
    versions = [int(p.name) for p in task_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def _serving_functions(
    model, labels, size, channels, threshold, positive_index, temperature, flip_tta
):
    label_tensor = tf.constant([str(label) for label in labels])
    image_spec = tf.TensorSpec([None, size, size, channels], tf.uint8, name=mc.INPUT_KEY)

    @tf.function(input_signature=[image_spec])
    def serve(image):
        # Normalisation lives in the graph: the gateway sends raw uint8 pixels.
        pixels = tf.cast(image, tf.float32) / 255.0
        logits = model(pixels, training=False)
        if flip_tta:  # test-time augmentation: average with the left-right mirror image
            logits = (logits + model(tf.reverse(pixels, axis=[2]), training=False)) / 2.0
        return {mc.PROBABILITIES_KEY: tf.nn.softmax(tf.cast(logits, tf.float32) / temperature)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name=mc.INFO_INPUT_KEY)])
    def model_info(batch):
        n = tf.shape(batch)[0]
        return {
            mc.LABELS_KEY: tf.tile(label_tensor[tf.newaxis], [n, 1]),
            mc.THRESHOLD_KEY: tf.fill([n], tf.constant(threshold, tf.float32)),
            mc.POSITIVE_INDEX_KEY: tf.fill([n], tf.constant(positive_index, tf.int32)),
        }

    return serve, model_info


def write_warmup_records(version_dir: Path, task: str, size: int, channels: int) -> Path:
    """TF Serving replays these at load so the first real request is not slow."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = version_dir / "assets.extra" / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for batch in WARMUP_BATCH_SIZES:
            pixels = rng.integers(0, 256, (batch, size, size, channels), dtype=np.uint8)
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=task, signature_name=mc.PREDICT_SIGNATURE)
            )
            request.inputs[mc.INPUT_KEY].CopyFrom(tf.make_tensor_proto(pixels))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def export_model(
    model,
    models_root: Path,
    task: str,
    labels: list[str],
    size: int,
    channels: int,
    threshold: float = -1.0,
    positive_index: int = -1,
    temperature: float = 1.0,
    model_card: str | None = None,
    version: int | None = None,
    flip_tta: bool = False,
) -> Path:
    """Write `model` (logits out, float [0,1] pixels in) as a new version; returns its directory."""
    import keras

    task_dir = Path(models_root) / task
    version = version or next_version(task_dir)
    version_dir = task_dir / str(version)
    if version_dir.exists():
        raise FileExistsError(f"{version_dir} exists; model versions are immutable")
    serve, model_info = _serving_functions(
        model, labels, size, channels, threshold, positive_index, temperature, flip_tta
    )
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(mc.PREDICT_SIGNATURE, serve)
    archive.add_endpoint(mc.INFO_SIGNATURE, model_info)
    archive.write_out(str(version_dir), verbose=False)
    write_warmup_records(version_dir, task, size, channels)
    if model_card:
        (version_dir / "model_card.md").write_text(model_card)
    return version_dir


def build_tiny_model(size: int, channels: int, n_classes: int, seed: int = 0):
    """An untrained two-layer CNN: for tests and for trying the serving path without training."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(n_classes)(x))


def main() -> None:
    parser = argparse.ArgumentParser(description="Export an untrained tiny model (tests, demos).")
    parser.add_argument("models_root", type=Path)
    parser.add_argument("--task", required=True)
    parser.add_argument("--labels", required=True, help="comma-separated, in output order")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=-1.0)
    parser.add_argument("--positive-index", type=int, default=-1)
    parser.add_argument("--version", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    labels = args.labels.split(",")
    model = build_tiny_model(args.size, args.channels, len(labels), args.seed)
    out = export_model(
        model,
        args.models_root,
        args.task,
        labels,
        args.size,
        args.channels,
        args.threshold,
        args.positive_index,
        version=args.version,
        model_card=f"# {args.task} (untrained tiny test model)\n",
    )
    print(out)


if __name__ == "__main__":
    main()
