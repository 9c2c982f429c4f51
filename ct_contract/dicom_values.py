"""A DICOM frame's values and what it says about itself: Hounsfield units, windows, slice facts.

dicom.py reads and checks the object and decodes its frames; this module turns one decoded frame
into 8-bit pixels (rescale to modality values, the window, MONOCHROME1 inverted, colour depth) and
reads the few facts a slice may tell (SliceMeta), from classic or enhanced multi-frame objects.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from ct_contract.slices import SliceMeta, row_blocks

MODALITY_RE = re.compile(r"[A-Z0-9_]{1,16}")
UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")


@dataclass(frozen=True)
class Window:
    """A linear display window in Hounsfield units (or the file's own units for MR)."""

    center: float
    width: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.center) and math.isfinite(self.width) and self.width > 0):
            raise ValueError(f"a window needs a finite center and width > 0, not {self}")


def window_to_uint8(values: np.ndarray, window: Window) -> np.ndarray:
    """Map values linearly onto 0..255: uint8 = rint(clip((v - (c - w/2)) / w * 255, 0, 255)).

    So center - width/2 -> 0 and center + width/2 -> 255 (not DICOM's VOI formula with its
    c - 0.5 and w - 1). Computed in float64, rounded half to even (numpy.rint); NaN -> 0.
    """
    low = window.center - window.width / 2
    scaled = (np.asarray(values, dtype=np.float64) - low) / window.width * 255.0
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


# ----------------------------------------------------------------------------- pixels


def _lookup(dataset: Dataset, frame: int, sequence: str, keyword: str) -> Any:
    """An attribute of one frame: enhanced multi-frame objects keep them in functional groups
    (per-frame, then shared), classic objects at the top level. None when absent or unreadable."""
    try:
        for groups, item in (
            ("PerFrameFunctionalGroupsSequence", frame),
            ("SharedFunctionalGroupsSequence", 0),
        ):
            if groups in dataset and len(dataset[groups].value) > item:
                group = dataset[groups].value[item]
                if sequence in group and len(group[sequence].value) > 0:
                    inner = group[sequence].value[0]
                    if keyword in inner:
                        return inner[keyword].value
        return dataset[keyword].value if keyword in dataset else None
    except Exception:  # a malformed sequence reads as absent
        return None


def _floats(value: Any, count: int) -> list[float] | None:
    """The first `count` finite numbers of a DS value (single or multi-valued), else None."""
    try:
        values = [value] if isinstance(value, (str, bytes, int, float)) else list(value)
        numbers = [float(v) for v in values[:count]]
    except Exception:
        return None
    if len(numbers) < count or not all(math.isfinite(n) for n in numbers):
        return None
    return numbers


def _file_window(dataset: Dataset, frame: int) -> Window | None:
    center = _floats(_lookup(dataset, frame, "FrameVOILUTSequence", "WindowCenter"), 1)
    width = _floats(_lookup(dataset, frame, "FrameVOILUTSequence", "WindowWidth"), 1)
    if center is None or width is None or width[0] <= 0:
        return None
    return Window(center[0], width[0])


def _rescale(dataset: Dataset, frame: int) -> tuple[float, float]:
    """Stored values -> modality values (HU for CT): value * RescaleSlope + RescaleIntercept."""
    sequence = "PixelValueTransformationSequence"
    slope = _floats(_lookup(dataset, frame, sequence, "RescaleSlope"), 1) or [1.0]
    intercept = _floats(_lookup(dataset, frame, sequence, "RescaleIntercept"), 1) or [0.0]
    return slope[0], intercept[0]


def _blocks(arr: np.ndarray) -> Iterator[slice]:
    return row_blocks(arr.shape[0], arr[:1].size)


def grey_to_uint8(
    dataset: Dataset, arr: np.ndarray, frame: int, photometric: str, window: Window | None
) -> np.ndarray:
    """Windowed 8-bit pixels, computed a block of rows at a time: a frame never has a float
    copy of its own (the float64 values of one block are the only extra memory)."""
    slope, intercept = _rescale(dataset, frame)

    def values(rows: slice) -> np.ndarray:
        return arr[rows].astype(np.float64) * slope + intercept

    window = window or _file_window(dataset, frame) or _min_max_window(arr, values)
    grey = np.zeros(arr.shape, np.uint8)
    if window is None:
        return grey
    for rows in _blocks(arr):
        grey[rows] = window_to_uint8(values(rows), window)
    if photometric == "MONOCHROME1":  # high is dark
        np.subtract(255, grey, out=grey)
    return grey


def _min_max_window(arr: np.ndarray, values: Callable[[slice], np.ndarray]) -> Window | None:
    low, high = math.inf, -math.inf
    for rows in _blocks(arr):
        block = values(rows)
        finite = block[np.isfinite(block)]
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    if not high > low:
        return None  # constant (or no finite) frame: all zeros
    return Window((low + high) / 2, high - low)


def colour_to_uint8(dataset: Dataset, arr: np.ndarray) -> np.ndarray:
    """RGB of any bit depth -> 8 bits by dropping the low bits beyond BitsStored's top 8."""
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    bits = arr.dtype.itemsize * 8
    with contextlib.suppress(Exception):
        bits = min(max(int(dataset.get("BitsStored", bits)), 8), bits)
    out = np.empty(arr.shape, np.uint8)
    for rows in _blocks(arr):
        shifted = np.right_shift(np.clip(arr[rows], 0, None).astype(np.uint64), bits - 8)
        out[rows] = np.clip(shifted, 0, 255)
    return out


# ----------------------------------------------------------------------------- meta


def slice_meta(dataset: Dataset, frame: int | None) -> SliceMeta:
    index = frame or 0
    position = _floats(_lookup(dataset, index, "PlanePositionSequence", "ImagePositionPatient"), 3)
    orientation = _floats(
        _lookup(dataset, index, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
    )
    return SliceMeta(
        modality=_matching(dataset, "Modality", MODALITY_RE),
        body_part=_matching(dataset, "BodyPartExamined", MODALITY_RE),
        position=_project(position, orientation),
        instance=_instance(dataset),
        series_uid=_matching(dataset, "SeriesInstanceUID", UID_RE),
        frame=frame,
    )


def _project(position: list[float] | None, orientation: list[float] | None) -> float | None:
    """ImagePositionPatient along the slice normal (row cosines x column cosines)."""
    if position is None or orientation is None:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    length = float(np.linalg.norm(normal))
    if not math.isfinite(length) or length < 1e-6:
        return None
    projected = float(np.dot(position, normal) / length)
    return projected if math.isfinite(projected) else None


def _instance(dataset: Dataset) -> int | None:
    try:
        return int(dataset.get("InstanceNumber"))
    except Exception:  # absent or not a number
        return None


def _matching(dataset: Dataset, keyword: str, pattern: re.Pattern) -> str | None:
    try:
        value = str(dataset.get(keyword, "")).strip("\0 ")
    except Exception:
        return None
    return value if len(value) <= 64 and pattern.fullmatch(value) else None
