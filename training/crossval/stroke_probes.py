"""Baselines for brain-stroke with 5-fold scan-grouped cross-validation: is there signal a simple
model finds, or a shortcut (scanner, intensity) that would flatter a CNN?

1. intensity histogram, mean/std, left-right asymmetry -> logistic regression;
2. frozen features of the project's brain-tumor network (needs its checkpoint from
   `make train TASK=brain-tumor`), as they are and as |f(x) - f(mirror(x))|.
Prints slice-level and scan-level AUC (scan = mean of its top 25% slice probabilities).
`.venv/bin/python -m training.crossval.stroke_probes`
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from training.cli import CHECKPOINTS, DEFAULT_DATA_ROOT
from training.data.images import discover, load_pixels
from training.evaluation import metrics as ev
from training.evaluation.scans import SCAN_TOP_FRACTION
from training.tasks import get_task

SIZE = 128


def grouped_cv_auc(features: np.ndarray, y: np.ndarray, scans: np.ndarray, c: float):
    scores = np.zeros(len(y))
    for train, test in GroupKFold(5).split(features, y, scans):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
        scores[test] = clf.fit(features[train], y[train]).predict_proba(features[test])[:, 1]
    ids, agg = ev.aggregate_scans(scores, scans, SCAN_TOP_FRACTION)
    truth = np.array([y[scans == s][0] for s in ids])
    return roc_auc_score(y, scores), roc_auc_score(truth, agg)


def intensity_features(pixels: np.ndarray) -> np.ndarray:
    x = pixels[..., 0].astype(np.float32)
    hist = np.stack([np.histogram(a, bins=32, range=(0, 256))[0] / a.size for a in x])
    asym = np.abs(x - x[:, :, ::-1]).mean(axis=(1, 2))
    extra = np.stack([x.mean((1, 2)), x.std((1, 2)), asym, (x > 200).mean((1, 2))], axis=1)
    return np.concatenate([hist, extra], axis=1)


def tumour_features(pixels: np.ndarray):
    import keras

    from training.nets.architectures import build

    checkpoint = CHECKPOINTS / f"brain-tumor-plain_cnn-{SIZE}.weights.h5"
    if not checkpoint.exists():
        return None
    model = build("plain_cnn", SIZE, 1, 7)
    model.load_weights(checkpoint)
    pooled = next(layer for layer in model.layers if "global_average" in layer.name)
    extractor = keras.Model(model.input, pooled.output)
    x = pixels.astype(np.float32) / 255.0
    plain = extractor.predict(x, batch_size=64, verbose=0)
    mirrored = extractor.predict(x[:, :, ::-1], batch_size=64, verbose=0)
    return plain, np.abs(plain - mirrored)


def main() -> None:
    task = get_task("brain-stroke")
    records = discover(DEFAULT_DATA_ROOT / task.dataset_dir, task)
    pixels = load_pixels(records, SIZE, 1)
    y = np.array([r.label == task.positive_label for r in records], dtype=int)
    scans = np.array([r.scan for r in records])
    sets = {"intensity/asymmetry": intensity_features(pixels)}
    frozen = tumour_features(pixels)
    if frozen is not None:
        sets["tumour-net features"], sets["tumour-net mirror differences"] = frozen
    for name, features in sets.items():
        for c in (0.01, 0.1, 1.0):
            slice_auc, scan_auc = grouped_cv_auc(features, y, scans, c)
            print(f"{name:30s} C={c:<5} slice AUC {slice_auc:.3f}  scan AUC {scan_auc:.3f}")


if __name__ == "__main__":
    main()
