"""Why the gateway does not use keras-image-helper (the seeds' and the course's preprocessor).

keras-image-helper resizes with nearest-neighbour to a stretched square, forces RGB, normalises
outside the graph and downloads with `urlopen` (no timeout, no address checks). Serving with it
would feed the models pixels that training never saw; these tests measure that skew on real scans.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ct_contract.preprocess import load_model_input

keras_image_helper = pytest.importorskip("keras_image_helper")


def _helper_pixels(path, size: int) -> np.ndarray:
    """The seed pipeline's pixels, de-normalised back to 0..255 greyscale for comparison."""
    pre = keras_image_helper.create_preprocessor("xception", target_size=(size, size))
    x = pre.from_path(str(path))[0]  # xception: x / 127.5 - 1, RGB
    return np.round((x + 1.0) * 127.5).mean(axis=-1)


def test_seed_preprocessing_diverges_from_training_pixels(shared_samples, tmp_path):
    src = Image.open(shared_samples / "brain-stroke_stroke.jpg").convert("L")
    wide = src.crop((0, 100, src.width, src.height - 100))  # a non-square scan, as scanners emit
    path = tmp_path / "wide.png"
    wide.save(path)
    ours = load_model_input(path.read_bytes(), 128, 1)[..., 0].astype(np.float64)
    seed = _helper_pixels(path, 128)
    # Letterboxing keeps anatomy proportions; the helper stretches it: rows differ substantially.
    assert np.abs(ours - seed).mean() > 10.0
    # Even on a square image, nearest-neighbour resizing differs from the training pipeline's.
    square = shared_samples / "brain-stroke_normal.jpg"
    ours_sq = load_model_input(square.read_bytes(), 128, 1)[..., 0].astype(np.float64)
    assert np.abs(ours_sq - _helper_pixels(square, 128)).max() > 20.0
