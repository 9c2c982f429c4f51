"""Render a model's explanation heatmap over the image it saw, as a PNG (Pillow and numpy only).

The heatmap (float [h, w] in [0, 1], a coarse grid from the explain signature) is resized to the
model's input, coloured and alpha-blended over that input: the letterboxed pixels the model saw,
so a hot spot sits exactly where the model looked.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

MIN_SIDE = 256  # small model inputs are enlarged so a person can see the overlay
MAX_ALPHA = 0.6
# A perceptually ordered ramp (dark blue -> red -> yellow): (position, (r, g, b)).
_RAMP = (
    (0.0, (0, 0, 96)),
    (0.35, (64, 0, 160)),
    (0.6, (220, 40, 40)),
    (0.85, (255, 160, 0)),
    (1.0, (255, 255, 160)),
)


class HeatmapError(ValueError):
    """The heatmap array is not a finite 2-D map in [0, 1]."""


def colourise(heat: np.ndarray) -> np.ndarray:
    """[h, w] in [0, 1] -> uint8 [h, w, 3] along the ramp."""
    positions = np.array([p for p, _ in _RAMP])
    colours = np.array([c for _, c in _RAMP], dtype=np.float64)
    channels = [np.interp(heat, positions, colours[:, k]) for k in range(3)]
    return np.clip(np.round(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


def overlay(pixels: np.ndarray, heat: np.ndarray) -> Image.Image:
    """The model input (uint8 [S, S, 1|3]) with `heat` blended over it, as an RGB image."""
    heat = np.asarray(heat, dtype=np.float64)
    if heat.ndim != 2 or heat.size == 0 or not np.all(np.isfinite(heat)):
        raise HeatmapError(f"heatmap must be a finite 2-D map, got shape {heat.shape}")
    heat = np.clip(heat, 0.0, 1.0)
    base = Image.fromarray(
        np.ascontiguousarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    )
    base = base.convert("RGB")
    side = max(MIN_SIDE, base.width)
    base = base.resize((side, side), Image.Resampling.BILINEAR)
    heat_img = Image.fromarray(np.round(heat * 255).astype(np.uint8), "L")
    heat_big = np.asarray(heat_img.resize((side, side), Image.Resampling.BILINEAR)) / 255.0
    alpha = (heat_big * MAX_ALPHA)[..., np.newaxis]
    blended = np.asarray(base, dtype=np.float64) * (1 - alpha) + colourise(heat_big) * alpha
    return Image.fromarray(np.clip(np.round(blended), 0, 255).astype(np.uint8), "RGB")


def overlay_png_b64(pixels: np.ndarray, heat: np.ndarray) -> str:
    """`overlay` encoded as a base64 PNG string (for JSON)."""
    buffer = io.BytesIO()
    overlay(pixels, heat).save(buffer, format="PNG", optimize=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
