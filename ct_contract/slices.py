"""What decoding produces and how it fails: the slice types and errors of the contract.

pictures.py (the Pillow reader) and dicom.py (the DICOM reader) both build these, and
preprocess.py (the entry that hands the bytes to one of them) returns them: they live here, below
all three, so that no reader imports the entry or the other reader.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from PIL import Image

# Decompression-bomb guard: checked on the header, before any pixel is decoded.
DEFAULT_MAX_PIXELS = 40_000_000
# Raster formats scans arrive in. Pillow would otherwise also open EPS (which runs Ghostscript
# where installed) and dozens of exotic formats: attack surface with no clinical use.
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
# Either reader's refusal of bytes that turn out to be neither a picture nor a DICOM object.
NOT_AN_IMAGE = (
    f"cannot decode image: not a picture ({', '.join(ALLOWED_FORMATS)}) or a DICOM object"
)
# Offline callers (training, scripts) decode one file at a time: a budget that only stops bombs.
# The gateway passes its own, sized from the pod's memory (gateway/config.py).
DEFAULT_DECODE_BUDGET = 1 << 30
# Values converted to float at once when windowing or scaling a frame (2 MB of float64).
BLOCK_VALUES = 1 << 18


class ImageDecodeError(ValueError):
    """The bytes are not an image we can decode (truncated, corrupt, unsupported, too large)."""


class ImageTooLargeError(ImageDecodeError):
    """The image header declares more pixels than allowed."""


class DecodeBudgetError(ImageTooLargeError):
    """Decoding would take more memory than is left of the request's budget."""


class MultiFrameError(ImageDecodeError):
    """A multi-frame DICOM object where one image was expected."""


class UnsupportedTransferSyntaxError(ImageDecodeError):
    """A DICOM object encoded in a transfer syntax no installed decoder reads (the message names
    the syntax)."""


@dataclass(frozen=True)
class SliceMeta:
    """What a slice tells about itself, and nothing else from a DICOM object (no patient data)."""

    modality: str | None  # "CT", "MR", ... (DICOM only; None for pictures)
    position: float | None  # ImagePositionPatient along the slice normal; None when absent
    instance: int | None  # InstanceNumber
    series_uid: str | None  # only to detect mixed series: never in an answer or a log
    frame: int | None  # 0-based frame index in a multi-frame object, else None
    body_part: str | None = None  # BodyPartExamined (DICOM only): checked against a model's domain


@dataclass(frozen=True)
class DecodedSlice:
    image: Image.Image  # 8-bit "L" or "RGB", already windowed
    meta: SliceMeta


# Applied to each slice as soon as it is decoded (the gateway: down to the model's input size).
Shrink = Callable[[Image.Image], Image.Image]

PICTURE_META = SliceMeta(modality=None, position=None, instance=None, series_uid=None, frame=None)


class DecodeBudget:
    """The bytes one request may hold while decoding, checked before they are spent.

    `charge` counts what one decoding step may hold at once (given back when the enclosing
    `transient()` block ends), `keep` what stays for the rest of the request (the decoded slices).
    One budget per request (not thread-safe)."""

    def __init__(self, limit: int = DEFAULT_DECODE_BUDGET) -> None:
        self.limit = limit
        self.kept = 0
        self.passing = 0

    def left(self) -> int:
        return max(self.limit - self.kept - self.passing, 0)

    def charge(self, nbytes: int, what: str) -> None:
        """Count `nbytes` until the enclosing transient() block ends; DecodeBudgetError (and
        nothing counted) when they are more than is left."""
        self._check(nbytes, what)
        self.passing += nbytes

    def keep(self, nbytes: int, what: str) -> None:
        """Count `nbytes` for the rest of the request."""
        self._check(nbytes, what)
        self.kept += nbytes

    def _check(self, nbytes: int, what: str) -> None:
        if nbytes > self.left():
            raise DecodeBudgetError(
                f"{what} would need about {nbytes} bytes of memory, more than the {self.left()} "
                f"left of the {self.limit} bytes one request may use"
            )

    @contextlib.contextmanager
    def transient(self) -> Iterator[DecodeBudget]:
        """Everything charged inside the block is given back when it ends."""
        mark = self.passing
        try:
            yield self
        finally:
            self.passing = mark


def image_bytes(img: Image.Image) -> int:
    """What Pillow holds for an image: 1 or 2 bytes per pixel for L, P, 1 and I;16 modes,
    4 for the others (RGB included: Pillow stores 3 bands in 4 bytes)."""
    per_pixel = 2 if img.mode.startswith("I;16") else 1 if img.mode in ("1", "L", "P") else 4
    return img.width * img.height * per_pixel


def row_blocks(rows: int, row_values: int) -> Iterator[slice]:
    """Row ranges of a frame, each about BLOCK_VALUES values, for blockwise float work."""
    step = max(1, BLOCK_VALUES // max(row_values, 1))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))
