"""Candidate architectures: small from-scratch CNNs that run in a few ms per image on a CPU.

All take float pixels in [0, 1] of shape [size, size, channels] and return logits; export.py wraps
them with the uint8 input and the softmax. `compare.py` measures them for accuracy and latency.
"""

from __future__ import annotations

import keras
from keras import layers

from training.cli import TrainingError

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


class BrainCrop(layers.Layer):
    """Crops every image to the box of the head it shows, shrunk by `margin` to lose the skull,
    as a square `output_size` image: a graph step, so serving sees what training saw (the
    gateway still sends the whole slice at the model's input size; export is unchanged).

    The head: pixels above `threshold` (air and the background are near 0 in a brain window) on a
    grid pooled to about 64 cells, eroded once (3x3) so thin scanner-table curves and text do not
    widen the box; rows and columns holding any head cell give the box. It is made square around
    its centre (no distortion; outside the image is 0), then shrunk by `margin` of its side on
    each side. An image without a head keeps the whole frame. The network thereby never sees the
    table, the frame's borders or the head's size and position, and the brain gets the pixels."""

    def __init__(self, output_size: int, margin: float = 0.06, threshold: float = 0.15, **kw):
        super().__init__(**kw)
        self.output_size, self.margin, self.threshold = int(output_size), margin, threshold

    def get_config(self):
        return {
            **super().get_config(),
            "output_size": self.output_size,
            "margin": self.margin,
            "threshold": self.threshold,
        }

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_size, self.output_size, input_shape[-1])

    def boxes(self, x):
        """[N, 4] normalised (y1, x1, y2, x2) crop boxes of float images [N, S, S, C]."""
        import tensorflow as tf

        size = int(x.shape[1])
        cell = max(1, size // 64)
        grey = tf.reduce_mean(x, axis=-1, keepdims=True)
        pooled = tf.nn.avg_pool2d(grey, cell, cell, "VALID")
        mask = tf.cast(pooled > self.threshold, tf.float32)
        mask = -tf.nn.max_pool2d(-mask, 3, 1, "SAME")  # erosion
        grid = int(mask.shape[1])

        def extent(profile):  # [N, grid] of 0/1 -> first, last+1 (normalised), any
            first = tf.cast(tf.argmax(profile, axis=1), tf.float32)
            last = grid - tf.cast(tf.argmax(tf.reverse(profile, axis=[1]), axis=1), tf.float32)
            return first / grid, last / grid, tf.reduce_max(profile, axis=1) > 0

        y1, y2, found = extent(tf.reduce_max(mask, axis=[2, 3]))
        x1, x2, _ = extent(tf.reduce_max(mask, axis=[1, 3]))
        side = tf.maximum(y2 - y1, x2 - x1)
        cy, cx = (y1 + y2) / 2, (x1 + x2) / 2
        half = side * (0.5 - self.margin)
        box = tf.stack([cy - half, cx - half, cy + half, cx + half], axis=1)
        full = tf.constant([[0.0, 0.0, 1.0, 1.0]])
        return tf.stop_gradient(tf.where(found[:, None], box, full))

    def call(self, x):
        import tensorflow as tf

        n = tf.shape(x)[0]
        return tf.image.crop_and_resize(
            x,
            self.boxes(x),
            tf.range(n),
            (self.output_size, self.output_size),
            extrapolation_value=0.0,
        )


def plain_cnn(
    size: int,
    channels: int,
    n_classes: int,
    width: int = 24,
    dropout: float = 0.3,
    mirror: bool = False,
    crop: int | None = None,
):
    """VGG-like: a strided stem, then four stages of two 3x3 convolutions and max-pooling.
    `crop`: first crop to the brain (BrainCrop) at `crop` px."""
    inputs = keras.Input((size, size, channels))
    x = BrainCrop(crop, name="brain_crop")(inputs) if crop else inputs
    x = MirrorDifference()(x) if mirror else x
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


def brain_crop_mirror(size: int, channels: int, n_classes: int, crop: int = 96):
    """plain_cnn_mirror on the brain cropped from the `size` px input, at `crop` px."""
    return plain_cnn(size, channels, n_classes, mirror=True, crop=crop)


def efficientnet_lite0(
    size: int, channels: int, n_classes: int, resolution: int = 224, dropout: float = 0.2
):
    """EfficientNet-Lite0 with its ImageNet weights (training/nets/efficientnet_lite.py), fine-tuned
    whole: the slice resized to `resolution` (ImageNet's 224 by default; less costs less), grey
    repeated to RGB, pooled, one Dense."""
    from training.nets import efficientnet_lite as el

    inputs = keras.Input((size, size, channels))
    x = layers.Resizing(resolution, resolution, name="resize")(inputs)
    x = el.pretrained("lite0", resolution)(el.ToRgb(name="to_rgb")(x))
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, out, name="efficientnet_lite0")


ARCHITECTURES = {
    "plain_cnn": plain_cnn,
    "sep_resnet": sep_resnet,
    "plain_cnn_mirror": plain_cnn_mirror,
    "brain_crop_mirror": brain_crop_mirror,
    "efficientnet_lite0": efficientnet_lite0,
}


def build(arch: str, size: int, channels: int, n_classes: int):
    """`arch` is a name of ARCHITECTURES, `brain_crop_mirror@<crop px>` or
    `efficientnet_lite0@<backbone px>`."""
    name, _, px = arch.partition("@")
    sized = {"brain_crop_mirror": brain_crop_mirror, "efficientnet_lite0": efficientnet_lite0}
    try:
        if px:
            if name not in sized or not px.isdigit():
                raise KeyError(arch)
            return sized[name](size, channels, n_classes, int(px))
        return ARCHITECTURES[name](size, channels, n_classes)
    except KeyError:
        known = ", ".join(ARCHITECTURES)
        raise TrainingError(f"unknown architecture {arch!r}; known: {known}") from None


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
