"""One scan's slices: checked to be one series and put in anatomical order.

Order, the first that every slice supports: position along the slice normal (DICOM
ImagePositionPatient projected on the normal of ImageOrientationPatient), else InstanceNumber,
else natural file-name order ("x (2).jpg" before "x (10).jpg"). Frames of one multi-frame object
keep their frame order. Ties keep the upload order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ct_contract.preprocess import DecodedSlice
from gateway.errors import UnprocessableImageError

ORDER_POSITION = "image_position"
ORDER_INSTANCE = "instance_number"
ORDER_FILE_NAME = "file_name"
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class NamedSlice:
    name: str  # file name (or zip entry), with "#<frame>" for frames of a multi-frame object
    slice: DecodedSlice

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", printable(self.name))  # answers echo it


def printable(name: str) -> str:
    """`name` without what a client could use to garble an answer or a log viewer: C0 and C1
    controls, bidi and other format characters (U+202E), line and paragraph separators."""
    return "".join(ch for ch in name if ch.isprintable())


def natural_key(name: str) -> tuple:
    """'x (10).jpg' sorts after 'x (2).jpg': digit runs compare as numbers, the rest casefolded."""
    parts = _DIGITS.split(name)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.casefold()) for p in parts)


def check_one_series(slices: Sequence[NamedSlice]) -> None:
    """422 when the slices come from several DICOM series, or mix DICOM objects and pictures."""
    uids = {s.slice.meta.series_uid for s in slices if s.slice.meta.series_uid}
    if len(uids) > 1:
        raise UnprocessableImageError(
            f"the files belong to {len(uids)} different DICOM series (SeriesInstanceUID); "
            "send the slices of one series per request",
            "mixed_series",
        )
    dicom = sum(1 for s in slices if s.slice.meta.modality is not None)
    if 0 < dicom < len(slices):
        raise UnprocessableImageError(
            f"the series mixes {dicom} DICOM objects with {len(slices) - dicom} pictures; "
            "send one kind",
            "mixed_series",
        )


def order(slices: Sequence[NamedSlice]) -> tuple[list[NamedSlice], str]:
    """The slices in anatomical order and the name of the rule used."""
    indexed = list(enumerate(slices))
    metas = [s.slice.meta for s in slices]
    if all(m.position is not None for m in metas):
        key, rule = (lambda p: (p[1].slice.meta.position, _frame(p[1]), p[0])), ORDER_POSITION
    elif all(m.instance is not None for m in metas):
        key, rule = (lambda p: (p[1].slice.meta.instance, _frame(p[1]), p[0])), ORDER_INSTANCE
    else:
        key, rule = (lambda p: (natural_key(p[1].name), _frame(p[1]), p[0])), ORDER_FILE_NAME
    return [s for _, s in sorted(indexed, key=key)], rule


def _frame(item: NamedSlice) -> int:
    return item.slice.meta.frame or 0
