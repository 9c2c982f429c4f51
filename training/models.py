"""Candidate architectures: small from-scratch CNNs that run in a few ms per image on a CPU.

All take float pixels in [0, 1] of shape [size, size, channels] and return logits; export.py wraps
them with the uint8 input and the softmax. `compare.py` measures them for accuracy and latency.
"""

from __future__ import annotations

import keras
from keras import layers

# BatchNorm statistics adapt within ~50 steps instead of Keras's default ~500 (momentum 0.99),
# so short runs (the architecture comparison, small datasets) evaluate with settled statistics.
BN_MOMENTUM = 0.9


def _bn(x):
    return layers.BatchNormalization(momentum=BN_MOMENTUM)(x)


def _conv_bn(x, filters: int, kernel: int = 3, strides: int = 1):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = _bn(x)
    return layers.ReLU()(x)


class MirrorDifference(layers.Layer):
    """Appends |x - mirror(x)| as channels: a bleed or an infarct breaks the left-right symmetry
    of an axial head slice, which this makes visible to the first convolution."""

    def call(self, x):
        return keras.ops.concatenate([x, keras.ops.abs(x - keras.ops.flip(x, axis=2))], axis=-1)


def plain_cnn(
    size: int,
    channels: int,
    n_classes: int,
    width: int = 24,
    dropout: float = 0.3,
    mirror: bool = False,
):
    """VGG-like: a strided stem, then four stages of two 3x3 convolutions and max-pooling."""
    inputs = keras.Input((size, size, channels))
    x = MirrorDifference()(inputs) if mirror else inputs
    x = _conv_bn(x, width, 5, strides=2)
    for mult in (1, 2, 4, 8):
        x = _conv_bn(x, width * mult)
        x = _conv_bn(x, width * mult)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, layers.Dense(n_classes, name="logits")(x), name="plain_cnn")


def sep_resnet(size: int, channels: int, n_classes: int, width: int = 32, dropout: float = 0.3):
    """Mini-Xception: depthwise-separable residual blocks, cheaper per layer than plain convs."""
    inputs = keras.Input((size, size, channels))
    x = _conv_bn(inputs, width, 3, strides=2)
    x = _conv_bn(x, width)
    for mult in (2, 4, 8):
        filters = width * mult
        shortcut = layers.Conv2D(filters, 1, strides=2, use_bias=False)(x)
        shortcut = _bn(shortcut)
        for _ in range(2):
            x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
            x = _bn(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = layers.Add()([x, shortcut])
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, layers.Dense(n_classes, name="logits")(x), name="sep_resnet")


def plain_cnn_mirror(size: int, channels: int, n_classes: int):
    return plain_cnn(size, channels, n_classes, mirror=True)


ARCHITECTURES = {
    "plain_cnn": plain_cnn,
    "sep_resnet": sep_resnet,
    "plain_cnn_mirror": plain_cnn_mirror,
}


def build(arch: str, size: int, channels: int, n_classes: int):
    try:
        return ARCHITECTURES[arch](size, channels, n_classes)
    except KeyError:
        raise SystemExit(
            f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}"
        ) from None


def augmenter(seed: int):
    """Geometry and intensity jitter that a head CT/MRI slice can plausibly show."""
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.06, fill_mode="constant", seed=seed),
            layers.RandomZoom((-0.12, 0.12), fill_mode="constant", seed=seed),
            layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed),
            layers.RandomContrast(0.25, seed=seed),
            layers.RandomBrightness(0.12, value_range=(0.0, 1.0), seed=seed),
        ],
        name="augment",
    )
