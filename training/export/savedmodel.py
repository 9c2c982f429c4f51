"""Export a trained Keras model as a self-describing TF Serving SavedModel version.

Layout written: <models_root>/<task>/<version>/{saved_model.pb, variables/, assets.extra/
tf_serving_warmup_requests, model_card.md, smoke_golden.json (training/golden.py)}. The signatures
follow ct_contract/signatures.py: serving_default, model_info (with info_json, built by
`build_info` from training/tasks.py and the caller's validation figures) and explain (Grad-CAM,
training/export/explain.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from ct_contract import signatures as mc

WARMUP_FILE = "tf_serving_warmup_requests"
WARMUP_BATCH_SIZES = (1, 4)


def next_version(task_dir: Path) -> int:
    """The next integer version directory under a task's model folder."""
    versions = [int(p.name) for p in task_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def build_info(
    task: str,
    labels: list[str],
    validation: dict | None,
    scan_rule: dict | None = None,
    ood: dict | None = None,
) -> dict:
    """The info_json object (ct_contract/signatures.py INFO_*): window, label groups, floor and
    intended use from training/tasks.py; `validation` ({"how": str, figures...}) is checked
    against the task's floor; `ood` the domain's out-of-distribution threshold
    (training/nets/ood.py). A task unknown to tasks.py (tiny test exports) states nothing but the
    missing validation."""
    from training.tasks import INTENDED_USE, TASK_SPECS, check_floor

    spec = TASK_SPECS.get(task)
    if spec is None:
        return {mc.INFO_VALIDATED: False, mc.INFO_VALIDATED_REASON: f"{task}: no task facts"}
    groups = spec.label_groups
    if groups and sorted(sum(groups.values(), [])) != sorted(labels):
        raise ValueError(f"{task}: label_groups in training/tasks.py do not cover {labels}")
    validated, reason = check_floor(spec, validation)
    return {
        mc.INFO_WINDOW: spec.window,
        mc.INFO_SCAN_RULE: scan_rule,
        mc.INFO_LABEL_GROUPS: groups,
        mc.INFO_VALIDATION: validation,
        mc.INFO_VALIDATED: validated,
        mc.INFO_VALIDATED_REASON: reason,
        mc.INFO_INTENDED_USE: INTENDED_USE,
        mc.INFO_DOMAIN: spec.domain.to_info(ood) if spec.domain else None,
    }


def json_safe(value):
    """`value` with NaN and infinities as null (strict JSON; an AUC of one class is NaN)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _serving_functions(
    model, labels, size, channels, threshold, positive_index, temperature, flip_tta, info, ood
):
    from training.export.explain import make_explain

    label_tensor = tf.constant([str(label) for label in labels])
    info_tensor = tf.constant(json.dumps(info, sort_keys=True, allow_nan=False))
    image_spec = tf.TensorSpec([None, size, size, channels], tf.uint8, name=mc.INPUT_KEY)
    explain_fn = make_explain(model, positive_index if len(labels) == 2 else -1, flip_tta)

    @tf.function(input_signature=[image_spec])
    def serve(image):
        # Normalisation lives in the graph: the gateway sends raw uint8 pixels.
        pixels = tf.cast(image, tf.float32) / 255.0
        logits = model(pixels, training=False)
        if flip_tta:  # test-time augmentation: average with the left-right mirror image
            logits = (logits + model(tf.reverse(pixels, axis=[2]), training=False)) / 2.0
        out = {mc.PROBABILITIES_KEY: tf.nn.softmax(tf.cast(logits, tf.float32) / temperature)}
        return _with_ood(out, pixels)

    def _with_ood(out: dict, pixels) -> dict:
        if ood is not None:
            out[mc.OOD_SCORE_KEY] = tf.cast(
                tf.reshape(ood(pixels, training=False), [-1]), tf.float32
            )
        return out

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name=mc.INFO_INPUT_KEY)])
    def model_info(batch):
        n = tf.shape(batch)[0]
        return {
            mc.LABELS_KEY: tf.tile(label_tensor[tf.newaxis], [n, 1]),
            mc.THRESHOLD_KEY: tf.fill([n], tf.constant(threshold, tf.float32)),
            mc.POSITIVE_INDEX_KEY: tf.fill([n], tf.constant(positive_index, tf.int32)),
            mc.INFO_JSON_KEY: tf.fill([n], info_tensor),
        }

    @tf.function(input_signature=[image_spec])
    def explain(image):
        pixels = tf.cast(image, tf.float32) / 255.0
        logits, heatmap, cls = explain_fn(pixels)
        out = {
            mc.PROBABILITIES_KEY: tf.nn.softmax(tf.cast(logits, tf.float32) / temperature),
            mc.HEATMAP_KEY: heatmap,
            mc.HEATMAP_CLASS_KEY: cls,
        }
        return _with_ood(out, pixels)

    return serve, model_info, explain


def write_warmup_records(version_dir: Path, task: str, size: int, channels: int) -> Path:
    """TF Serving replays these at load so the first real request (predict or explain) is not
    slow."""
    path = version_dir / "assets.extra" / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature in (mc.PREDICT_SIGNATURE, mc.EXPLAIN_SIGNATURE):
            for batch in WARMUP_BATCH_SIZES:
                pixels = rng.integers(0, 256, (batch, size, size, channels), dtype=np.uint8)
                writer.write(_warmup_record(task, signature, pixels))
    return path


def _warmup_record(task: str, signature: str, pixels: np.ndarray) -> bytes:
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=task, signature_name=signature)
    )
    request.inputs[mc.INPUT_KEY].CopyFrom(tf.make_tensor_proto(pixels))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )
    return log.SerializeToString()


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
    info: dict | None = None,
    ood=None,
) -> Path:
    """Write `model` (logits out, float [0,1] pixels in) as a new version; returns its directory.
    `info` is the info_json object (`build_info`); None: tasks.py's facts, no validation.
    `ood`: a Keras model from the same pixels to [N] out-of-distribution scores
    (training/nets/ood.py), served as OOD_SCORE_KEY beside the probabilities."""
    import keras

    task_dir = Path(models_root) / task
    version = version or next_version(task_dir)
    version_dir = task_dir / str(version)
    if version_dir.exists():
        raise FileExistsError(f"{version_dir} exists; model versions are immutable")
    info = json_safe(build_info(task, labels, None) if info is None else info)
    serve, model_info, explain = _serving_functions(
        model, labels, size, channels, threshold, positive_index, temperature, flip_tta, info, ood
    )
    archive = keras.export.ExportArchive()
    if ood is None:
        archive.track(model)  # training/reexport.py reads `variables` back in model order
    # else: the endpoints' variables alone (Keras stores tracked ones a second time: 2x the size)
    archive.add_endpoint(mc.PREDICT_SIGNATURE, serve)
    archive.add_endpoint(mc.INFO_SIGNATURE, model_info)
    archive.add_endpoint(mc.EXPLAIN_SIGNATURE, explain)
    archive.write_out(str(version_dir), verbose=False)
    write_warmup_records(version_dir, task, size, channels)
    from training.golden import write_golden  # the smoke's expected answers (ct_local/smoke)

    write_golden(models_root, task, version)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training.export",
        description="Export an untrained tiny model (tests, demos).",
    )
    parser.add_argument("models_root", type=Path)
    parser.add_argument("--task", required=True)
    parser.add_argument("--labels", required=True, help="comma-separated, in output order")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=-1.0)
    parser.add_argument("--positive-index", type=int, default=-1)
    parser.add_argument("--version", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
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
