"""The smoke probe: fixed inputs every exported version is run on, and where its answers are kept.

Export (training/golden.py) runs each new version on exactly these inputs and writes the answers
to GOLDEN_FILE in the version's folder; the smoke (ct_local/smoke) sends the same inputs to a
running stack and fails when another version or other probabilities answer. Drawn in memory, so
no dataset is needed.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

GOLDEN_FILE = "smoke_golden.json"  # <models root>/<task>/<version>/GOLDEN_FILE
SERIES_SLICES = 3


def synthetic_png(size: int = 128) -> bytes:
    """A greyscale 'scan': dark background, a bright ellipse and a smaller blob."""
    image = Image.new("L", (size, size), 10)
    draw = ImageDraw.Draw(image)
    draw.ellipse((size // 8, size // 6, size * 7 // 8, size * 5 // 6), fill=170)
    draw.ellipse((size // 3, size // 3, size // 2, size // 2), fill=240)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def smoke_inputs() -> tuple[bytes, list[tuple[str, bytes]]]:
    """Exactly what the smoke sends: one image for :predict, the slices for :predict_series
    (in upload order; the gateway answers in natural file-name order)."""
    files = [(f"slice ({k}).png", synthetic_png(96 + 16 * k)) for k in range(SERIES_SLICES, 0, -1)]
    return synthetic_png(), files
