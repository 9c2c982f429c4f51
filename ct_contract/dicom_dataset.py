"""DICOM bytes -> pydicom's dataset (pixel data not decoded), within the request's memory budget.

dicom.py (the DICOM reader) calls `read_dataset` first, then decodes the frames. Deflated datasets
inflate only as far as the budget allows; compressed pixel data cut short is refused here. pydicom's
own warnings and log lines (which quote tag values) are silenced here, before anything is parsed.
"""

from __future__ import annotations

import io
import logging
import warnings
import zlib

import pydicom
from pydicom import filereader
from pydicom.dataset import Dataset, FileDataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from ct_contract.slices import (
    NOT_AN_IMAGE,
    DecodeBudget,
    DecodeBudgetError,
    ImageDecodeError,
    ImageTooLargeError,
)

# pydicom logs every warning to the "pydicom" logger as well, quoting tag values (names, dates):
# keep those out of the gateway's JSON logs and off stderr. Reading validation off: malformed
# values are dealt with where they are used, not warned about.
logging.getLogger("pydicom").propagate = False
warnings.filterwarnings("ignore", module=r"(pydicom|ct_contract\.dicom\w*)(\.|$)")
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

PIXEL_DATA = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_DEFLATED = str(DeflatedExplicitVRLittleEndian).encode()
_INFLATE_CHUNK = 1 << 16


def read_dataset(data: bytes, budget: DecodeBudget, preamble: bool) -> Dataset:
    """The parsed dataset. `preamble`: the bytes have "DICM" after a 128-byte preamble, and
    ImageDecodeError says the header is malformed when pydicom cannot read them. Without one they
    only start like a dataset: unless they parse into one with a group 0x0008 element or pixel
    data they are no image at all. DecodeBudgetError for a deflated dataset that inflates past
    what is left of `budget` (its inflated bytes are charged to it)."""
    dataset = _parse(data, budget)
    if preamble and dataset is None:
        raise ImageDecodeError("cannot read DICOM object: malformed or truncated header")
    if not preamble and (
        dataset is None
        or not any(
            tag.group == 0x0008 or tag == PIXEL_DATA
            for tag in dataset.keys()  # noqa: SIM118 - iterating a Dataset converts every value
        )
    ):
        raise ImageDecodeError(NOT_AN_IMAGE)
    _check_encapsulation_complete(dataset, data)
    return dataset


def _check_encapsulation_complete(dataset: Dataset, data: bytes) -> None:
    """Compressed pixel data must end in its sequence delimiter: pydicom reads a file cut inside
    it up to the end (with a warning only), and some decoders then return part of an image."""
    try:
        element = dataset.get_item(PIXEL_DATA) if PIXEL_DATA in dataset else None
        deflated = dataset.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
        if element is None or element.length != _UNDEFINED_LENGTH or deflated:
            return  # native data (its length is checked on decoding); deflated: offsets differ
        end = element.value_tell + len(element.value)
    except Exception:  # unreadable here: the decoder will refuse it
        return
    if data[end : end + 8] != _SEQUENCE_DELIMITER:
        raise ImageDecodeError("DICOM pixel data is truncated")


def _parse(data: bytes, budget: DecodeBudget) -> Dataset | None:
    """pydicom's reading of the bytes (pixel data not decoded), or None when it gives up."""
    try:
        start = _deflated_start(data) if _DEFLATED in data else None
        if start is not None:
            return _read_deflated(data, start, budget)
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except ImageTooLargeError:
        raise
    except Exception:  # pydicom raises many types on malformed input
        return None


def _deflated_start(data: bytes) -> int | None:
    """Where the deflated dataset starts, when the file meta names the Deflated Explicit VR
    Little Endian syntax: pydicom would inflate the rest whole, with no limit, while parsing."""
    fp = io.BytesIO(data)
    filereader.read_preamble(fp, force=True)
    meta = filereader._read_file_meta_info(fp)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return None
    filereader._read_command_set_elements(fp)
    return fp.tell()


def _read_deflated(data: bytes, start: int, budget: DecodeBudget) -> Dataset:
    """The dataset pydicom would read. The stream is inflated once to count (nothing kept, refused
    past half of what is left of `budget`), then again into memory charged to `budget`: the
    inflated bytes and pydicom's copies of the values in them."""
    fp = io.BytesIO(data)
    preamble = filereader.read_preamble(fp, force=True)
    meta = filereader._read_file_meta_info(fp)
    stream = memoryview(data)[start:]
    size = _inflated_size(stream, budget.left() // 2)
    budget.charge(2 * size, "the deflated DICOM dataset")
    inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(stream, size + 1)
    dataset = filereader.read_dataset(io.BytesIO(inflated), False, True)
    del inflated  # the dataset holds copies of its values
    ds = FileDataset(io.BytesIO(), dataset, preamble, meta, False, True)
    ds.set_original_encoding(False, True, dataset._character_set)
    return ds


def _inflated_size(stream: memoryview, limit: int) -> int:
    """How many bytes a raw deflate stream inflates to, keeping none of them; DecodeBudgetError
    as soon as that passes `limit`."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    size = 0
    for start in range(0, len(stream), _INFLATE_CHUNK):
        pending: bytes | memoryview = stream[start : start + _INFLATE_CHUNK]
        while True:
            size += len(chunk := inflater.decompress(pending, _INFLATE_CHUNK))
            if size > limit:
                raise DecodeBudgetError(
                    f"the deflated DICOM dataset inflates past {limit} bytes, more than this "
                    "request's memory budget leaves for it"
                )
            pending = inflater.unconsumed_tail
            if inflater.eof or (not pending and len(chunk) < _INFLATE_CHUNK):
                break
        if inflater.eof:  # what follows the stream is not inflated (pydicom ignores it too)
            break
    return size
