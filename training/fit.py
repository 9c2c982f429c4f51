"""Fitting a classifier on a Prepared split: augmentation, class weights, early stopping (a
backbone may come from a project checkpoint), the choice of MIL fitting (training/mil.py), and
logits for evaluation (flip TTA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.cli import TrainingError
from training.data.prepare import Prepared
from training.nets.checkpoints import transfer_backbone
from training.tasks import TaskSpec


def fit(
    p: Prepared,
    arch: str,
    size: int,
    channels: int,
    epochs: int,
    seed: int,
    init_from: Path | None,
    batch_size: int,
    patience: int,
    lr: float = 2e-3,
    keep_best: bool = True,
):
    """`keep_best`: early stopping on the validation side, its best epoch's weights kept; False:
    exactly `epochs` epochs, the validation side is never looked at (k-fold cross-validation)."""
    import keras

    from training.nets.architectures import build

    keras.utils.set_random_seed(seed)
    model = build(arch, size, channels, len(p.labels))
    if init_from:
        transfer_backbone(model, init_from)
    train_ds, val_ds = _datasets(p, seed, batch_size)
    binary = len(p.labels) == 2
    model.compile(
        optimizer=keras.optimizers.AdamW(
            keras.optimizers.schedules.CosineDecay(lr, _steps(p, epochs, batch_size)),
            weight_decay=1e-4,
        ),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.05),
        metrics=[
            "accuracy",
            keras.metrics.AUC(name="auc", from_logits=True, multi_label=not binary),
        ],
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_auc" if binary else "val_loss",
        mode="max" if binary else "min",
        patience=patience,
        restore_best_weights=True,
    )
    history = model.fit(
        train_ds,
        validation_data=val_ds if keep_best else None,
        epochs=epochs,
        callbacks=[stop] if keep_best else [],
        verbose=2,
    )
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}


def class_weighted(p: Prepared) -> np.ndarray:
    """Per training image: its slice weight times its class's inverse frequency."""
    counts = np.bincount(p.y_train, minlength=len(p.labels)).astype(np.float64)
    class_w = (counts.sum() / (len(counts) * np.maximum(counts, 1)))[p.y_train]
    return (p.w_train * class_w).astype(np.float32)


def _steps(p: Prepared, epochs: int, batch_size: int) -> int:
    return max(1, epochs * int(np.ceil(len(p.y_train) / batch_size)))


def _datasets(p: Prepared, seed: int, batch_size: int):
    """The augmented, shuffled, weighted training batches and the plain validation batches."""
    import tensorflow as tf

    from training.nets.architectures import augmenter

    aug = augmenter(seed)
    n_classes = len(p.labels)

    def to_train(x, y, w):
        x = aug(tf.cast(x, tf.float32) / 255.0, training=True)
        return tf.clip_by_value(x, 0.0, 1.0), tf.one_hot(y, n_classes), w

    train_ds = (
        tf.data.Dataset.from_tensor_slices((p.x_train, p.y_train, class_weighted(p)))
        .shuffle(len(p.y_train), seed=seed)
        .batch(batch_size)
        .map(to_train, num_parallel_calls=2)
        .prefetch(2)
    )
    val_ds = tf.data.Dataset.from_tensor_slices(
        (tf.cast(p.x_val, tf.float32) / 255.0, tf.one_hot(p.y_val, n_classes))
    ).batch(64)
    return train_ds, val_ds


def fit_for(task: TaskSpec, p: Prepared, *, mil: bool, **kwargs):
    """`fit`, or multiple-instance training (training/mil.py) for tasks labelled per scan."""
    if not mil:
        return fit(p, **kwargs)
    from training.mil import fit_mil

    if task.positive_label is None or not task.grouped_by_scan:
        raise TrainingError(f"--mil needs a two-class task grouped by scan; {task.name} is not")
    return fit_mil(p, pos=p.labels.index(task.positive_label), **kwargs)


def predict_logits(model, x: np.ndarray, flip_tta: bool) -> np.ndarray:
    """Logits of uint8 images; with `flip_tta` averaged with those of the mirror images."""
    xf = x.astype(np.float32) / 255.0
    logits = model.predict(xf, batch_size=64, verbose=0)
    if flip_tta:
        logits = (logits + model.predict(xf[:, :, ::-1], batch_size=64, verbose=0)) / 2
    return logits
