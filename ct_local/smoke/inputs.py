"""What the smoke sends: a synthetic image for :predict and a small series for :predict_series.

Drawn in memory, so no dataset is needed. training/golden.py runs each exported version on
exactly these inputs to write its golden answers.
"""

from __future__ import annotations

import io
import uuid

from PIL import Image, ImageDraw

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


def multipart(field: str, filename: str, content: bytes, content_type: str) -> tuple[bytes, str]:
    """One file as a multipart/form-data body; returns (body, Content-Type)."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
    ).encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def multipart_files(field: str, files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """PNG files under one field (a series upload); returns (body, Content-Type)."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{name}"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + data
        + b"\r\n"
        for name, data in files
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
