"""Decoding within a memory budget: deflated DICOM inflates only as far as the budget allows,
every image and frame is charged before it is decoded, slices are shrunk as they come, and
codecs that return damaged pixels without failing are refused."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import ExplicitVRLittleEndian

from ct_contract.preprocess import (
    DecodeBudget,
    DecodeBudgetError,
    ImageDecodeError,
    decode_single,
    decode_slices,
    fit_to_input,
    to_model_input,
)
from ct_local.bench.bombs import deflated_dicom, j2k_dicom, png
from tests.fixtures.dicom_files import MR_COMPRESSED, read_testfile

MIB = 1 << 20


def resaved(data: bytes, syntax: str = ExplicitVRLittleEndian) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_deflated_dicom_decodes_as_its_inflated_twin():
    deflated = read_testfile("image_dfl.dcm")
    got = np.asarray(decode_slices(deflated)[0].image)
    assert np.array_equal(got, np.asarray(decode_slices(resaved(deflated))[0].image))


def test_a_deflate_bomb_is_refused_without_inflating_it():
    bomb = deflated_dicom(256 * MIB)
    tracemalloc.start()
    try:
        with pytest.raises(DecodeBudgetError):
            decode_single(bomb, budget=DecodeBudget(16 * MIB))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MIB  # it counted the inflated bytes, it never held them


def test_a_deflated_dataset_over_the_budget_is_refused_before_it_is_read():
    deflated = read_testfile("image_dfl.dcm")  # inflates to ~260 KB
    with pytest.raises(DecodeBudgetError):
        decode_single(deflated, budget=DecodeBudget(300_000))
    decode_single(deflated, budget=DecodeBudget(16 * MIB))


def test_a_frame_is_charged_before_it_is_decoded():
    data = j2k_dicom(2000)  # 4M pixels of 16 bits: tens of MB to decode
    with pytest.raises(DecodeBudgetError):
        decode_single(data, budget=DecodeBudget(8 * MIB))
    with pytest.raises(DecodeBudgetError):
        decode_single(png("L", 4000), budget=DecodeBudget(8 * MIB))


def test_the_budget_spans_a_series_through_what_each_slice_keeps():
    budget = DecodeBudget(8 * MIB)
    picture = png("L", 1000)
    for _ in range(3):  # ~2 MB each at once, given back: only what they keep stays charged
        decode_slices(picture, budget=budget)
    assert budget.passing == 0 and budget.kept == 3 * 1000 * 1000
    with pytest.raises(DecodeBudgetError):
        for _ in range(8):
            decode_slices(picture, budget=budget)


def test_a_shrunk_slice_gives_the_same_model_input():
    data = read_testfile("CT_small.dcm")
    shrink = lambda img: fit_to_input(img, 48, 1)  # noqa: E731
    shrunk = decode_single(data, shrink=shrink, budget=DecodeBudget(2 * MIB))
    assert shrunk.image.size == (48, 48)
    expected = to_model_input(decode_single(data).image, 48, 1)
    assert np.array_equal(to_model_input(shrunk.image, 48, 1), expected)


# ----------------------------------------------------------------------------- damaged codecs


def with_frame(name: str, edit) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(read_testfile(name)))
    (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
    ds.PixelData = encapsulate([edit(frame)])
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize(
    "name",
    ["MR_small_jpeg_ls_lossless.dcm", "JPEGLSNearLossless_16.dcm", "MR_small_jp2klossless.dcm"],
)
@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_a_codestream_cut_short_is_refused(name, keep):
    data = with_frame(name, lambda frame: frame[: int(len(frame) * keep)])
    with pytest.raises(ImageDecodeError, match="damaged|cannot decode"):
        decode_slices(data)


def test_an_rle_segment_longer_than_its_frame_is_refused():
    def lengthen(frame: bytes) -> bytes:
        # one more run of 100 zeros at the end of the last segment: it decodes past the frame
        return frame + bytes([256 - 99, 0])

    data = with_frame("MR_small_RLE.dcm", lengthen)
    with pytest.raises(ImageDecodeError, match="damaged"):
        decode_slices(data)


@pytest.mark.parametrize("name", MR_COMPRESSED)
def test_intact_frames_of_those_codecs_still_decode(name):
    assert decode_slices(read_testfile(name))[0].image.size == (64, 64)
