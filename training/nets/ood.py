"""An in-graph out-of-distribution score: how far an image's generic ImageNet features lie from
those of the task's training images.

Features: EfficientNet-Lite0 (ImageNet weights, frozen) up to stage 5 (112 channels, stride 16)
on the whole input resized to `OOD_RESOLUTION`, per channel the mean and the standard deviation
over positions (224 numbers: what is there, and how textured it is; a blank image has no
texture). Mid-level features separate "a head CT slice" from "a spine picture, a photo, noise"
better than the last layer, which ImageNet's classes shape, and cost a fraction of the network.

Score: the Mahalanobis distance to the training features (Ledoit-Wolf shrunk covariance), divided
by sqrt(dimensions) so that a typical training image scores about 1. The threshold is the
`ACCEPT_QUANTILE` of the scores of held-out in-domain images (scored by detectors fitted without
their scan or group), so about that share of new in-domain images is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from training.nets import efficientnet_lite as el

OOD_VARIANT = "lite0"
OOD_STAGE = 5
OOD_RESOLUTION = 160
ACCEPT_QUANTILE = 0.995
SCORE_NAME = (
    "Mahalanobis distance of EfficientNet-Lite0 stage-5 feature statistics (ImageNet weights) to "
    "the training images', divided by sqrt(dimensions)"
)


class MeanStdPool(keras.layers.Layer):
    """[N, h, w, C] -> [N, 2C]: per channel mean and standard deviation over positions."""

    def call(self, x):
        mean = keras.ops.mean(x, axis=(1, 2))
        var = keras.ops.mean(keras.ops.square(x), axis=(1, 2)) - keras.ops.square(mean)
        return keras.ops.concatenate([mean, keras.ops.sqrt(keras.ops.maximum(var, 1e-12))], -1)


class MahalanobisScore(keras.layers.Layer):
    """[N, D] -> [N]: ||(f - mean) @ transform|| / sqrt(D) with fitted, frozen constants."""

    def __init__(self, dims: int, **kw):
        super().__init__(trainable=False, **kw)
        self.dims = int(dims)
        self.center = self.add_weight((self.dims,), initializer="zeros", trainable=False)
        self.transform = self.add_weight(
            (self.dims, self.dims), initializer="identity", trainable=False
        )

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}

    def call(self, features):
        z = keras.ops.matmul(features - self.center, self.transform)
        return keras.ops.sqrt(keras.ops.sum(keras.ops.square(z), axis=-1) / self.dims)


def feature_net(size: int, channels: int) -> keras.Model:
    """uint8-range floats [N, size, size, channels] in [0, 1] -> [N, 224] OOD features."""
    backbone = el.pretrained(OOD_VARIANT, OOD_RESOLUTION, last_stage=OOD_STAGE)
    backbone.trainable = False
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Resizing(OOD_RESOLUTION, OOD_RESOLUTION, name="ood_resize")(inputs)
    x = el.ToRgb(name="ood_rgb")(x)
    out = MeanStdPool(name="ood_pool")(backbone(x, training=False))
    return keras.Model(inputs, out, name="ood_features")


@dataclass(frozen=True)
class Detector:
    center: np.ndarray  # [D]
    transform: np.ndarray  # [D, D]: precision = transform @ transform.T

    def scores(self, features: np.ndarray) -> np.ndarray:
        z = (features - self.center) @ self.transform
        return np.sqrt((z**2).sum(axis=1) / self.center.size)


def fit(features: np.ndarray) -> Detector:
    """Mean and Ledoit-Wolf shrunk precision of in-domain features (float64 for the algebra)."""
    from sklearn.covariance import LedoitWolf

    f = np.asarray(features, np.float64)
    precision = LedoitWolf().fit(f).precision_
    return Detector(f.mean(axis=0), np.linalg.cholesky((precision + precision.T) / 2))


def held_out_scores(features: np.ndarray, groups: np.ndarray, folds: int = 5, seed: int = 0):
    """Every image's score under a detector fitted on the other folds of groups (scans, or
    duplicate clusters), so no image is scored by a detector that saw it or its neighbours."""
    rng = np.random.default_rng(seed)
    unique = np.unique(groups)
    folds = min(folds, len(unique))
    if folds < 2:
        raise ValueError("held-out OOD scores need images of at least two groups")
    fold_of_group = dict(zip(unique, rng.permutation(len(unique)) % folds, strict=True))
    fold = np.array([fold_of_group[g] for g in groups])
    out = np.empty(len(features))
    for k in range(folds):
        inside = fold == k
        out[inside] = fit(features[~inside]).scores(features[inside])
    return out


def score_model(size: int, channels: int, detector: Detector) -> keras.Model:
    """uint8-range floats in [0, 1] -> [N] scores: the graph the export serves."""
    net = feature_net(size, channels)
    layer = MahalanobisScore(detector.center.size, name="ood_score")
    out = layer(net.output)
    layer.set_weights([detector.center.astype(np.float32), detector.transform.astype(np.float32)])
    return keras.Model(net.input, out, name="ood_score_model")


def threshold_for(held_out: np.ndarray, quantile: float = ACCEPT_QUANTILE) -> float:
    return float(np.quantile(held_out, quantile))


def ood_for(pixels: np.ndarray, groups: np.ndarray, size: int, channels: int):
    """(score model fitted on every image, info_json "ood"): the threshold accepts
    ACCEPT_QUANTILE of held-out images (scored by detectors fitted without their group)."""
    net = feature_net(size, channels)
    feats = np.concatenate(
        [
            net.predict_on_batch(pixels[i : i + 64].astype(np.float32) / 255.0)
            for i in range(0, len(pixels), 64)
        ]
    )
    held_out = held_out_scores(feats, groups)
    threshold = threshold_for(held_out)
    info = {
        "threshold": threshold,
        "score": SCORE_NAME,
        "in_domain_acceptance": float(np.mean(held_out <= threshold)),
        "how": f"threshold: the {ACCEPT_QUANTILE} quantile of {len(held_out)} held-out "
        "training images' scores (5 folds grouped by scan or duplicate cluster)",
    }
    return score_model(size, channels, fit(feats)), info
