"""The decoding entry looks at the bytes once and hands them to one reader: a picture never
reaches pydicom, a DICOM object never reaches Pillow's opening, and nothing is parsed twice.
(That no reader imports the entry: tests/contract/test_layering.py.)"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable

import numpy as np
import pydicom
import pytest
from PIL import Image, UnidentifiedImageError
from pydicom.filewriter import write_dataset

from ct_contract import preprocess
from ct_contract.preprocess import (
    ImageDecodeError,
    Kind,
    decode_single,
    decode_slices,
    load_model_input,
    sniff,
)
from ct_contract.slices import ALLOWED_FORMATS, NOT_AN_IMAGE
from tests.fixtures.dicom_files import dicom_bytes, read_testfile

ENTRIES: dict[str, Callable[[bytes], object]] = {
    "decode_slices": decode_slices,
    "decode_single": decode_single,
    "load_model_input": lambda data: load_model_input(data, 16, 1),
}


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buffer, "PNG")
    return buffer.getvalue()


def _bare_dataset() -> bytes:
    """No preamble, no file meta: starts with a group 0x0008 element."""
    buffer = io.BytesIO()
    write_dataset(pydicom.filebase.DicomFileLike(buffer), pydicom.dcmread(io.BytesIO(_file())))
    return buffer.getvalue()


def _file() -> bytes:
    return dicom_bytes(np.arange(16, dtype=np.int16).reshape(4, 4))


SAMPLES = {
    "picture": (_png, Kind.PICTURE),
    "DICOM file": (_file, Kind.DICOM_FILE),
    "DICOM without preamble": (lambda: read_testfile("MR_small.dcm")[132:], Kind.DICOM_DATASET),
    "bare dataset": (_bare_dataset, Kind.DICOM_DATASET),
}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts the sniffs, Pillow's openings and pydicom's parsings while a test decodes."""
    counted: Counter = Counter()

    def counting(name: str, function: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            counted[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(preprocess, "sniff", counting("sniff", preprocess.sniff))
    monkeypatch.setattr(Image, "open", counting("pillow", Image.open))
    monkeypatch.setattr(pydicom, "dcmread", counting("pydicom", pydicom.dcmread))
    return counted


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("sample", SAMPLES)
def test_one_sniff_and_one_reader_per_decode(sample, entry, calls):
    make, kind = SAMPLES[sample]
    data = make()
    assert sniff(data) is kind
    calls.clear()
    ENTRIES[entry](data)
    expected = {"sniff": 1, "pillow": 1} if kind is Kind.PICTURE else {"sniff": 1, "pydicom": 1}
    assert dict(calls) == expected


def test_a_picture_behind_zeros_is_left_to_pillow_alone(calls):
    data = b"\x00" * 128 + _png()  # no "DICM": not DICOM, whatever pydicom might make of it
    with pytest.raises(ImageDecodeError, match="not a picture"):
        decode_slices(data)
    assert dict(calls) == {"sniff": 1, "pillow": 1}


@pytest.mark.parametrize("start", [b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08"])
def test_no_allowed_picture_format_starts_like_a_dataset(start):
    """Why bytes that start like a dataset go to the DICOM reader without asking Pillow."""
    data = start + _png()
    assert sniff(data) is Kind.DICOM_DATASET
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize(
    "data",
    [b"\x02\x00\x00\x00UL\x04\x00" + b"\xff" * 64, b"\x08\x00" + b"\xff" * 64, b"no image"],
)
def test_neither_picture_nor_dicom_gets_one_answer_from_either_reader(entry, data):
    with pytest.raises(ImageDecodeError) as refused:
        ENTRIES[entry](data)
    assert str(refused.value) == NOT_AN_IMAGE
