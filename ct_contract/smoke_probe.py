"""The smoke probe: fixed inputs every exported version is run on, and where its answers are kept.

Export (training/golden.py) runs each new version on exactly these inputs and writes the answers
to GOLDEN_FILE in the version's folder; the smoke (ct_local/smoke) sends the same inputs to a
running stack and fails when another version or other probabilities answer. The inputs are the
public sample slices committed under docs/samples/ (real head CT and MRI: a drawn picture is out
of every model's domain and would only ever be refused), so no dataset is needed.
"""

from __future__ import annotations

import io
from pathlib import Path

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


SAMPLES_DIR = Path(__file__).resolve().parents[1] / "docs" / "samples"
PREDICT_SAMPLE = "brain-stroke_normal.jpg"
# slice (1), (2), (3): two head CT slices, then a brain MRI (in the tumour model's domain; out of
# the stroke model's, so its series answer shows a slice left out of the scan rule)
SERIES_SAMPLES = (
    "brain-stroke_normal.jpg",
    "brain-stroke_stroke.jpg",
    "brain-tumor_mri_glioma.jpg",
)


def series_names() -> list[str]:
    """The series' slice names in natural (answer) order."""
    return [f"slice ({k}).jpg" for k in range(1, SERIES_SLICES + 1)]


def smoke_inputs() -> tuple[bytes, list[tuple[str, bytes]]]:
    """Exactly what the smoke sends: one image for :predict, the slices for :predict_series
    (in upload order, reversed; the gateway answers in natural file-name order)."""
    files = [
        (name, (SAMPLES_DIR / sample).read_bytes())
        for name, sample in zip(series_names(), SERIES_SAMPLES, strict=True)
    ]
    return (SAMPLES_DIR / PREDICT_SAMPLE).read_bytes(), files[::-1]
