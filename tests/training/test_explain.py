"""training/export/explain.py: the exported `explain` signature's Grad-CAM looks where the
evidence is.

A tiny CNN learns synthetic classes in seconds: (1) the class is the presence of a bright blob at a
random place, so the positive heatmaps must sit on the blob; (2) the class is a dark bar at the
left border while a bright blob appears in both classes, so the heatmaps must NOT sit on the
distracting blob. Also: explain's probabilities are serving_default's, the map's range and shape,
and info_json carries what training/tasks.py says."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ct_contract import signatures as mc

pytestmark = pytest.mark.slow

SIZE, BLOB, MARGIN = 32, 6, 2
LABELS = ["Normal", "Stroke"]


def _images(n: int, seed: int, bar_decides: bool):
    """uint8 [n, SIZE, SIZE, 1] on noise, labels, and each image's blob box (r0, r1, c0, c1)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(70, 150, (n, SIZE, SIZE, 1)).astype(np.uint8)
    y = np.arange(n) % 2
    boxes = []
    for i in range(n):
        r, c = rng.integers(4, SIZE - BLOB - 1, 2)
        if bar_decides or y[i]:
            x[i, r : r + BLOB, c : c + BLOB] = 255
        if bar_decides and y[i]:
            x[i, :, :3] = 0  # the class is this dark bar at the left border
        boxes.append((r - MARGIN, r + BLOB + MARGIN, c - MARGIN, c + BLOB + MARGIN))
    return x, y, boxes


def _trained_model(x, y, seed: int = 0):
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 1))
    h = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = layers.MaxPooling2D()(h)
    h = layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, layers.Dense(2)(h))
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x.astype(np.float32) / 255.0, y, epochs=30, batch_size=32, verbose=0)
    return model


def _export(model, root, flip_tta: bool):
    import tensorflow as tf

    from training.evaluation.scans import top_fraction_scan_rule
    from training.export.savedmodel import build_info, export_model

    info = build_info(
        "brain-stroke",
        LABELS,
        {"how": "synthetic test data", "scan_auc": 0.9},
        scan_rule=top_fraction_scan_rule(0.25, 0.4),
    )
    version_dir = export_model(
        model, root, "brain-stroke", LABELS, SIZE, 1, 0.5, 1, 1.3, info=info, flip_tta=flip_tta
    )
    return tf.saved_model.load(str(version_dir))


def _mass_in_boxes(heatmaps: np.ndarray, boxes) -> np.ndarray:
    """Share of each heatmap's mass (upsampled to the image) inside the image's box."""
    import tensorflow as tf

    up = tf.image.resize(heatmaps[..., np.newaxis], (SIZE, SIZE)).numpy()[..., 0]
    shares = []
    for cam, (r0, r1, c0, c1) in zip(up, boxes, strict=True):
        inside = cam[max(r0, 0) : r1, max(c0, 0) : c1].sum()
        shares.append(inside / max(cam.sum(), 1e-9))
    return np.array(shares)


def _explain(loaded, x):
    import tensorflow as tf

    return {
        k: v.numpy()
        for k, v in loaded.signatures[mc.EXPLAIN_SIGNATURE](image=tf.constant(x)).items()
    }


def test_heatmap_lies_on_the_deciding_blob(tmp_path):
    import tensorflow as tf

    x, y, _ = _images(512, 0, bar_decides=False)
    model = _trained_model(x, y)
    loaded = _export(model, tmp_path, flip_tta=True)
    xt, yt, boxes = _images(40, 1, bar_decides=False)
    out = _explain(loaded, xt)

    served = loaded.signatures[mc.PREDICT_SIGNATURE](image=tf.constant(xt))
    np.testing.assert_allclose(
        out[mc.PROBABILITIES_KEY], served[mc.PROBABILITIES_KEY].numpy(), atol=1e-6
    )
    assert (out[mc.PROBABILITIES_KEY].argmax(axis=1) == yt).mean() >= 0.9, "did not learn"
    heat = out[mc.HEATMAP_KEY]
    assert heat.shape == (40, 16, 16) and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    assert (out[mc.HEATMAP_CLASS_KEY] == 1).all()  # the positive class, whatever the verdict

    box_area = (BLOB + 2 * MARGIN) ** 2 / SIZE**2
    assert box_area < 0.15
    shares = _mass_in_boxes(heat[yt == 1], [b for b, t in zip(boxes, yt, strict=True) if t])
    assert np.median(shares) > 0.5, shares


def test_heatmap_avoids_a_blob_that_does_not_decide(tmp_path):
    x, y, _ = _images(512, 2, bar_decides=True)
    loaded = _export(_trained_model(x, y), tmp_path, flip_tta=False)
    xt, yt, boxes = _images(40, 3, bar_decides=True)
    out = _explain(loaded, xt)
    assert (out[mc.PROBABILITIES_KEY].argmax(axis=1) == yt).mean() >= 0.9, "did not learn"
    positives = [b for b, t in zip(boxes, yt, strict=True) if t]
    blob_share = _mass_in_boxes(out[mc.HEATMAP_KEY][yt == 1], positives)
    bar_share = _mass_in_boxes(out[mc.HEATMAP_KEY][yt == 1], [(0, SIZE, 0, 6)] * len(positives))
    assert np.median(blob_share) < 0.2, blob_share
    assert np.median(bar_share) > 0.5, bar_share


def test_info_json_carries_the_task_facts(tmp_path):
    import tensorflow as tf

    from training.export.savedmodel import build_tiny_model
    from training.tasks import get_task

    loaded = _export(build_tiny_model(SIZE, 1, 2), tmp_path, flip_tta=False)
    info_out = loaded.signatures[mc.INFO_SIGNATURE](batch=tf.zeros([3], tf.int32))
    rows = info_out[mc.INFO_JSON_KEY].numpy()
    assert len(rows) == 3 and len(set(rows)) == 1
    info = json.loads(rows[0])
    task = get_task("brain-stroke")
    assert info[mc.INFO_WINDOW] == task.window
    assert info[mc.INFO_SCAN_RULE]["aggregation"] == "top_fraction_mean"
    assert info[mc.INFO_SCAN_RULE]["top_fraction"] == 0.25
    assert info[mc.INFO_VALIDATED] is True and "scan_auc" in info[mc.INFO_VALIDATED_REASON]
    assert info[mc.INFO_LABEL_GROUPS] is None and "not a medical device" in info["intended_use"]


def test_tumour_info_groups_and_floor():
    from training.export.savedmodel import build_info
    from training.tasks import get_task

    task = get_task("brain-tumor")
    labels = sorted(sum(task.label_groups.values(), []))
    low = {"how": "x", "finding_accuracy": 0.983, "tumour_sensitivity": 0.995}
    info = build_info("brain-tumor", labels, low)
    assert info[mc.INFO_LABEL_GROUPS] == task.label_groups and info[mc.INFO_WINDOW] is None
    assert info[mc.INFO_VALIDATED] is False and "finding_accuracy 0.983" in info["validated_reason"]
    with pytest.raises(ValueError, match="label_groups"):
        build_info("brain-tumor", labels[:-1], low)


def test_ensemble_heatmap_averages_members():
    import tensorflow as tf

    from training.ensemble import average_model
    from training.export.explain import make_explain
    from training.export.savedmodel import build_tiny_model

    members = [build_tiny_model(32, 1, 3, seed=1), build_tiny_model(24, 1, 3, seed=2)]
    ensemble = average_model(members, [32, 24], 32, 1)
    x = tf.constant(np.random.default_rng(0).random((2, 32, 32, 1)), tf.float32)
    logits, heat, cls = make_explain(ensemble, -1, flip_tta=True)(x)
    expected = (ensemble(x) + ensemble(tf.reverse(x, axis=[2]))) / 2
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), atol=1e-5)
    assert heat.shape == (2, 15, 15) and np.isfinite(heat.numpy()).all()
    np.testing.assert_array_equal(cls.numpy(), expected.numpy().argmax(axis=1))
