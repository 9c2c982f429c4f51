"""Frozen ImageNet backbone features of a slice, the features a linear head is fitted on.

`feature_net` is a Keras model from uint8-range float pixels [N, S, S, C] in [0, 1]: optionally
the in-graph brain crop (training/models.py BrainCrop), grey to RGB, EfficientNet-Lite
(training/efficientnet_lite.py, ImageNet weights, frozen), then per image the global average of
the head's feature map and, with `mirror`, the mean absolute difference between the feature map
and that of the mirrored slice (flipped back): an axial head slice is nearly left-right symmetric,
and a lesion is where it is not. Pooled features of the mirror image would cancel a lesion out;
the difference of the maps keeps it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import keras
import numpy as np

from training import efficientnet_lite as el
from training.models import BrainCrop
from training.paths import CACHE_DIR


@dataclass(frozen=True)
class FeatureSpec:
    variant: str = "lite0"
    crop: bool = True  # BrainCrop to the backbone's resolution, else resize the whole slice
    mirror: bool = True

    @property
    def resolution(self) -> int:
        return el.get_variant(self.variant).resolution

    @property
    def name(self) -> str:
        return f"{self.variant}{'-crop' if self.crop else ''}{'-mirror' if self.mirror else ''}"


class MapMirrorDifference(keras.layers.Layer):
    """mean over positions of |F(x) - flip(F(flip(x)))|, per channel."""

    def call(self, maps):
        direct, mirrored = maps
        return keras.ops.mean(keras.ops.abs(direct - keras.ops.flip(mirrored, axis=2)), axis=(1, 2))


def feature_net(spec: FeatureSpec, size: int, channels: int) -> keras.Model:
    """[N, size, size, channels] floats in [0, 1] -> [N, D] frozen features (D = 1280, or 2560
    with `mirror`)."""
    backbone = el.pretrained(spec.variant)
    backbone.trainable = False
    inputs = keras.Input((size, size, channels))
    res = spec.resolution
    if spec.crop:
        x = BrainCrop(res, name="brain_crop")(inputs)
    else:
        x = keras.layers.Resizing(res, res, name="resize")(inputs)
    x = el.ToRgb(name="to_rgb")(x)
    maps = backbone(x, training=False)
    pooled = keras.layers.GlobalAveragePooling2D(name="pooled")(maps)
    if not spec.mirror:
        return keras.Model(inputs, pooled, name=f"features_{spec.name}")
    mirrored = backbone(keras.ops.flip(x, axis=2), training=False)
    diff = MapMirrorDifference(name="mirror_difference")([maps, mirrored])
    out = keras.layers.Concatenate(name="features")([pooled, diff])
    return keras.Model(inputs, out, name=f"features_{spec.name}")


def extract(
    net: keras.Model, pixels: np.ndarray, batch: int = 32, cache_key: str | None = None
) -> np.ndarray:
    """Features of uint8 pixels [N, S, S, C] (float32 [N, D]); cached under build/ by key."""
    cache = None
    if cache_key:
        digest = hashlib.sha256(pixels.tobytes()[:: max(1, pixels.size // 4096)]).hexdigest()[:12]
        cache = CACHE_DIR / f"features-{cache_key}-{pixels.shape[0]}-{digest}.npy"
        if cache.exists():
            return np.load(cache)
    started, out = time.time(), []
    for i in range(0, len(pixels), batch):
        out.append(
            np.asarray(net.predict_on_batch(pixels[i : i + batch].astype(np.float32) / 255.0))
        )
        if i // batch % 10 == 0:
            print(
                f"features {i + len(out[-1])}/{len(pixels)} {time.time() - started:.0f} s",
                flush=True,
            )
    features = np.concatenate(out).astype(np.float32)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, features)
    return features
