"""What decoding produces and how it fails: the slice types and errors of the contract.

preprocess.py (pictures, the entry point) and dicom.py (DICOM objects) both build these; they live
here so that neither of the two has to import the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

# Decompression-bomb guard: checked on the header, before any pixel is decoded.
DEFAULT_MAX_PIXELS = 40_000_000
# Raster formats scans arrive in. Pillow would otherwise also open EPS (which runs Ghostscript
# where installed) and dozens of exotic formats: attack surface with no clinical use.
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")


class ImageDecodeError(ValueError):
    """The bytes are not an image we can decode (truncated, corrupt, unsupported, too large)."""


class ImageTooLargeError(ImageDecodeError):
    """The image header declares more pixels than allowed."""


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


@dataclass(frozen=True)
class DecodedSlice:
    image: Image.Image  # 8-bit "L" or "RGB", already windowed
    meta: SliceMeta


PICTURE_META = SliceMeta(modality=None, position=None, instance=None, series_uid=None, frame=None)
