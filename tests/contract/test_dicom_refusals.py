"""DICOM the intake refuses or tells apart: unsupported transfer syntaxes, truncation at every
cut, missing pixel data, header caps before decoding, and detection by content, not by name."""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    HEVCMP51,
    MPEG2MPML,
    UID,
)

from ct_contract.pictures import decode_image, to_8bit
from ct_contract.preprocess import (
    ImageDecodeError,
    ImageTooLargeError,
    UnsupportedTransferSyntaxError,
    decode_slices,
    load_model_input,
    to_model_input,
)
from tests.fixtures.dicom_files import (
    dicom_bytes,
    edited,
    pixels,
    read_testfile,
    sample_path,
    with_transfer_syntax,
)

# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "uid", [MPEG2MPML, HEVCMP51, UID("1.2.3.4.5.6.7")], ids=["mpeg2", "hevc", "made-up"]
)
def test_undecodable_transfer_syntax_is_named(uid):
    with pytest.raises(UnsupportedTransferSyntaxError) as caught:
        decode_slices(with_transfer_syntax(uid))
    assert str(uid) in str(caught.value)
    if uid.name != str(uid):
        assert uid.name in str(caught.value)
    assert isinstance(caught.value, ImageDecodeError)


def without_padding(name: str) -> bytes:
    """The file with PixelData as its last element, so every cut truncates real content."""
    return edited(name, DataSetTrailingPadding=None)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "MR_small.dcm"])
def test_truncated_files_raise_image_decode_error_at_every_cut(name):
    data = without_padding(name)
    for cut in [*range(0, 300, 7), *range(300, len(data), 53), len(data) - 1]:
        with pytest.raises(ImageDecodeError):
            decode_slices(data[:cut])


def test_compressed_truncations_never_raise_anything_else():
    data = without_padding("MR_small_jpeg_ls_lossless.dcm")
    for cut in range(0, len(data), 41):
        with contextlib.suppress(ImageDecodeError):
            decode_slices(data[:cut])


def test_no_pixel_data():
    with pytest.raises(ImageDecodeError, match="DICOM object has no pixel data"):
        decode_slices(edited("CT_small.dcm", PixelData=None))


@pytest.mark.parametrize(
    "attrs",
    [
        {"Rows": 60000, "Columns": 60000},
        {"Rows": 65535, "Columns": 65535, "SamplesPerPixel": 3},
        {"NumberOfFrames": 100000},
    ],
)
def test_huge_headers_are_refused_before_decoding(attrs):
    # 16 bytes of pixel data: decoding would fail on the length, so ImageTooLargeError proves the
    # caps come first; and it must answer at once.
    data = dicom_bytes(np.zeros((2, 4), np.uint16), **attrs)
    start = time.monotonic()
    with pytest.raises(ImageTooLargeError):
        decode_slices(data)
    assert time.monotonic() - start < 1.0


def test_caps_follow_the_arguments():
    frames = dicom_bytes(np.zeros((5, 4, 4), np.uint8))
    assert len(decode_slices(frames, max_frames=5)) == 5
    with pytest.raises(ImageTooLargeError, match="5 frames"):
        decode_slices(frames, max_frames=4)
    with pytest.raises(ImageTooLargeError):
        decode_slices(frames, max_pixels=15)
    assert len(decode_slices(frames, max_pixels=16)) == 5


# ----------------------------------------------------------------------------- detection


def test_detection_by_content_not_name(tmp_path):
    disguised = tmp_path / "scan.jpg"
    disguised.write_bytes(read_testfile("CT_small.dcm"))
    piece = decode_slices(disguised.read_bytes())[0]
    assert piece.meta.modality == "CT"


def test_datasets_without_preamble_are_dicom():
    reference = pixels(read_testfile("MR_small.dcm"))
    no_preamble = read_testfile("MR_small.dcm")[132:]  # starts with the group 0x0002 file meta
    assert np.array_equal(pixels(no_preamble), reference)
    ds = pydicom.dcmread(sample_path("MR_small.dcm"))
    bare = io.BytesIO()  # no preamble, no file meta: implicit VR little endian
    write_dataset(pydicom.filebase.DicomFileLike(bare), ds)
    bare_bytes = bare.getvalue()
    assert bare_bytes[:2] == b"\x08\x00"
    assert np.array_equal(pixels(bare_bytes), reference)


def picture(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((40, 30)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP"])
def test_pictures_keep_the_pillow_path(fmt):
    data = picture(fmt)
    (piece,) = decode_slices(data)
    assert piece.meta.modality is None and piece.meta.position is None
    expected = to_8bit(decode_image(data))
    assert piece.image.mode == expected.mode
    assert np.array_equal(np.asarray(piece.image), np.asarray(expected))
    assert np.array_equal(load_model_input(data, 32, 1), to_model_input(decode_image(data), 32, 1))


@pytest.mark.parametrize(
    "data",
    [
        b"\x00" * 128 + picture("PNG"),  # a picture behind a zero "preamble" without DICM
        b"\x08\x00" + bytes(range(256)) * 4,  # starts like a dataset, is noise
        b"\x02\x00\x00\x00UL\x04\x00" + b"\xff" * 64,
        b"\x00" * 128 + b"DICM",  # magic and nothing else
        b"\x00" * 128 + b"DICM" + b"\xff" * 200,
    ],
)
def test_not_quite_dicom_is_an_image_decode_error(data):
    with pytest.raises(ImageDecodeError):
        decode_slices(data)
    with pytest.raises(ImageDecodeError):
        load_model_input(data, 16, 1)
