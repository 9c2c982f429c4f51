"""Grad-CAM inside the exported graph: the `explain` signature (ct_contract/signatures.py).

Why Grad-CAM: the project's networks are small functional CNNs that end in GlobalAveragePooling2D
and one Dense layer, which is exactly the shape Grad-CAM was made for. One forward pass and one
backward pass to the last feature map cost about as much as a second prediction, it needs no
baseline image or sampling (unlike integrated gradients, occlusion or SHAP), and it runs in the
SavedModel, so the gateway (no TensorFlow) only draws the map.

Its limits, which whoever reads a heatmap should know:
- The map is as coarse as the last feature map (6x6 for a 192 px plain_cnn): it says roughly where,
  never the lesion's outline; upsampling only smooths it.
- It shows what raised the explained class's score in this network, not what is medically there.
  A confidently wrong model gets a confident map; a weak model (brain-stroke) gets maps that mean
  little. Shortcuts (text, borders, scanner marks) show up as such, which is one use of it.
- ReLU keeps only evidence *for* the class; evidence against it is not drawn.
- Each map is scaled to [0, 1] on its own, so maps of two images are not comparable in strength;
  an all-zero map means no positive evidence at all.

Target class: the positive class of a two-class task (where the model sees e.g. stroke, explained
by its log-odds, the one quantity the probability depends on), else the predicted (argmax) class.
"""

from __future__ import annotations

import tensorflow as tf


def cam_model(model):
    """(feature map, logits) sub-model of a functional CNN: the feature map is the input of its
    GlobalAveragePooling2D, the last rank-4 tensor before the classifier."""
    import keras

    pools = [
        layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)
    ]
    if len(pools) != 1:
        raise ValueError(
            f"{model.name}: Grad-CAM needs one GlobalAveragePooling2D, found {len(pools)}"
        )
    features = pools[0].input
    if len(features.shape) != 4:
        raise ValueError(f"{model.name}: the pooled tensor is not a rank-4 feature map")
    return keras.Model(model.inputs, [features, model.outputs[0]], name=f"{model.name}_cam")


def cam_layer_name(model) -> str:
    """The layer whose output Grad-CAM weighs (for reports)."""
    parts = cam_parts(model)
    return ", ".join(part.outputs[0]._keras_history.operation.name for _, part in parts)


def cam_parts(model) -> list[tuple[int | None, object]]:
    """[(input size to resize to, or None; cam sub-model)]: one part for a plain CNN; one per
    member for an ensemble built by training.ensemble.average_model (the mean of its members'
    logits, each member a nested Keras model at its own input size)."""
    import keras

    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if not members or model.name != "ensemble":  # a nested backbone is not an ensemble
        return [(None, cam_model(model))]
    size = model.inputs[0].shape[1]
    return [
        (m.inputs[0].shape[1] if m.inputs[0].shape[1] != size else None, cam_model(m))
        for m in members
    ]


def _forward(parts, pixels):
    """Logits (mean over parts) and each part's feature map, recorded on the current tape."""
    import keras

    features, logits = [], []
    for resize, part in parts:
        x = pixels
        if resize is not None:  # as average_model does: bilinear, antialiased
            x = keras.layers.Resizing(resize, resize, antialias=True)(x)
        f, z = part(x, training=False)
        features.append(f)
        logits.append(tf.cast(z, tf.float32))
    return features, tf.add_n(logits) / len(logits)


def _class_score(logits, cls):
    """Per-image score whose gradient Grad-CAM takes: the logit of class `cls`, or for two
    classes its log-odds (the one quantity the class's probability depends on)."""
    onehot = tf.one_hot(cls, logits.shape[-1])
    score = tf.reduce_sum(logits * onehot, axis=-1)
    if logits.shape[-1] == 2:
        score -= tf.reduce_sum(logits * (1.0 - onehot), axis=-1)
    return score


def _cam(features, grads, grid):
    """Sum over parts of the gradient-weighted feature maps (pre-ReLU), each resized to `grid`."""
    total = 0.0
    for f, g in zip(features, grads, strict=True):
        weights = tf.reduce_mean(g, axis=[1, 2], keepdims=True)  # alpha_k per image
        cam = tf.reduce_sum(tf.cast(f, tf.float32) * weights, axis=-1)[..., tf.newaxis]
        if tuple(cam.shape[1:3]) != tuple(grid):
            cam = tf.image.resize(cam, grid, method="bilinear")
        total += cam[..., 0]
    return total


def normalise(cam):
    """ReLU, then per image divided by its maximum; an all-zero map stays zero (no NaN)."""
    cam = tf.nn.relu(cam)
    peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
    return tf.math.divide_no_nan(cam, peak)


UNCROPPED_GRID = (24, 24)  # heatmap grid over the whole frame for models that crop (BrainCrop)


def brain_crop_layer(model):
    """The model's BrainCrop layer (training/nets/architectures.py), or None."""
    from training.nets.architectures import BrainCrop

    found = [layer for layer in model.layers if isinstance(layer, BrainCrop)]
    return found[0] if found else None


def uncrop(cam, boxes, grid):
    """A map over each image's crop box ([N, h, w], boxes normalised y1, x1, y2, x2) -> the
    same map over the whole frame ([N, *grid]), zero outside the box: the gateway draws the
    heatmap over the whole image it sent."""
    # crop_and_resize extrapolates (zero outside the box) only along axes longer than 1 pixel:
    # a 1x1 map would fill the whole frame, so small maps are enlarged to at least 2x2 first.
    small = tf.shape(cam)[1:3]
    if cam.shape[1] is not None and min(cam.shape[1], cam.shape[2]) < 2:
        cam = tf.image.resize(cam[..., tf.newaxis], tf.maximum(small, 2), "bilinear")[..., 0]
    y1, x1, y2, x2 = (boxes[:, k] for k in range(4))
    height, width = y2 - y1, x2 - x1
    frame = tf.stack([-y1 / height, -x1 / width, (1 - y1) / height, (1 - x1) / width], axis=1)
    n = tf.shape(cam)[0]
    out = tf.image.crop_and_resize(
        cam[..., tf.newaxis], frame, tf.range(n), grid, extrapolation_value=0.0
    )
    return out[..., 0]


def make_explain(model, target: int, flip_tta: bool):
    """fn(pixels float [N,S,S,C] in [0,1]) -> (logits [N,K], heatmap [N,h,w], class int32 [N]).

    `logits` are what serving computes (the mean with the mirror view under flip_tta). `target`
    is the positive class index of a two-class task, or -1 (explain the argmax class). Under
    flip_tta the map is the sum of the map and the mirrored map of the mirrored image, both for
    the class the averaged logits choose."""
    parts = cam_parts(model)
    grid = tuple(max(p.outputs[0].shape[k] for _, p in parts) for k in (1, 2))
    crop = brain_crop_layer(model)  # the feature map covers the crop box, not the frame

    def explain(pixels):
        views = [pixels, tf.reverse(pixels, axis=[2])] if flip_tta else [pixels]
        with tf.GradientTape() as tape:
            outs = [_forward(parts, view) for view in views]
            logits = tf.add_n([z for _, z in outs]) / len(outs)
            if target >= 0:
                cls = tf.fill(tf.shape(logits)[:1], tf.constant(target, tf.int32))
            else:
                cls = tf.argmax(logits, axis=-1, output_type=tf.int32)
            # Views do not share features, so one gradient of the summed scores gives each
            # view's own Grad-CAM gradients.
            score = tf.add_n([_class_score(z, cls) for _, z in outs])
        grads = tape.gradient(score, [fs for fs, _ in outs])
        cams = [_cam(fs, gs, grid) for (fs, _), gs in zip(outs, grads, strict=True)]
        if crop is not None:
            cams = [
                uncrop(cam, crop.boxes(view), UNCROPPED_GRID)
                for cam, view in zip(cams, views, strict=True)
            ]
        cam = cams[0] + (tf.reverse(cams[1], axis=[2]) if flip_tta else 0.0)
        return logits, normalise(cam), cls

    return explain
