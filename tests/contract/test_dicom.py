"""DICOM pixels (ct_contract/dicom.py and dicom_values.py, via preprocess.py) on real files:
Hounsfield units, windows, MONOCHROME1, multi-frame, colour, each lossless encoding of an image."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from ct_contract.dicom import Window, window_to_uint8
from ct_contract.preprocess import (
    ImageDecodeError,
    decode_slices,
    load_model_input,
    to_model_input,
)
from tests.fixtures.dicom_files import (
    MR_LOSSLESS,
    dicom_bytes,
    hand_window,
    pixels,
    read_testfile,
    sample_path,
)

# ----------------------------------------------------------------------------- windowing


def test_window_maps_edges_center_and_clips_exactly():
    values = np.array([-1000, -160, -159.2, 40, 239.2, 240, 3000, np.nan])
    assert window_to_uint8(values, Window(40, 400)).tolist() == [0, 0, 1, 128, 254, 255, 255, 0]
    assert window_to_uint8(values, Window(40, 400)).dtype == np.uint8


@pytest.mark.parametrize("center, width", [(0, 0), (0, -1), (float("nan"), 10), (0, float("inf"))])
def test_window_refuses_degenerate_values(center, width):
    with pytest.raises(ValueError):
        Window(center, width)


def test_hounsfield_units_from_rescale_slope_and_intercept_match_a_hand_computation():
    raw = np.arange(-50, 1950, 10, dtype=np.int16).reshape(10, 20)
    data = dicom_bytes(raw, RescaleSlope=2, RescaleIntercept=-1024)
    hu = raw.astype(np.float64) * 2 - 1024
    for window in (Window(40, 400), Window(-600, 1500)):
        expected = hand_window(hu, window.center, window.width)
        got = np.asarray(decode_slices(data, window=window)[0].image)
        assert np.array_equal(got, expected)
    # The real CT_small.dcm: stored values, slope 1, intercept -1024.
    ds = pydicom.dcmread(sample_path("CT_small.dcm"))
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    got = np.asarray(decode_slices(read_testfile("CT_small.dcm"), window=Window(40, 80))[0].image)
    assert np.array_equal(got, hand_window(hu, 40, 80))
    assert 0 < (got == 255).mean() < 1  # the window really cuts: not a min-max image


def test_without_a_model_window_the_files_own_voi_window_is_used_first_value_if_several():
    raw = np.arange(200, dtype=np.uint16).reshape(10, 20) * 5
    single = dicom_bytes(raw, WindowCenter=300, WindowWidth=400)
    several = dicom_bytes(raw, WindowCenter=[300, 40], WindowWidth=[400, 80])
    assert np.array_equal(pixels(single), hand_window(raw, 300, 400))
    assert np.array_equal(pixels(several), hand_window(raw, 300, 400))
    # MR_small.dcm carries WindowCenter 600, WindowWidth 1600.
    ds = pydicom.dcmread(sample_path("MR_small.dcm"))
    assert np.array_equal(
        pixels(read_testfile("MR_small.dcm")), hand_window(ds.pixel_array, 600, 1600)
    )


def test_without_any_window_min_max_and_a_constant_frame_is_black():
    raw = np.array([[10, 20], [30, 110]], dtype=np.uint16)
    assert pixels(dicom_bytes(raw)).tolist() == [[0, 26], [51, 255]]
    assert pixels(dicom_bytes(np.full((4, 4), 700, np.uint16))).tolist() == [[0] * 4] * 4


def test_monochrome1_is_inverted():
    raw = np.array([[0, 100], [300, 1000]], dtype=np.uint16)
    mono2 = pixels(dicom_bytes(raw, WindowCenter=500, WindowWidth=1000))
    mono1 = pixels(dicom_bytes(raw, "MONOCHROME1", WindowCenter=500, WindowWidth=1000))
    assert mono2.tolist() == [[0, 26], [76, 255]]
    assert mono1.tolist() == (255 - mono2).tolist() == [[255, 229], [179, 0]]
    # A real MONOCHROME1 radiograph: its highest stored value shows darkest.
    ds = pydicom.dcmread(sample_path("6278"))
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    img = pixels(read_testfile("6278"))
    assert img[ds.pixel_array == ds.pixel_array.max()].max() == img.min()


# ----------------------------------------------------------------------------- frames, colour


def test_multi_frame_gives_one_slice_per_frame_with_frame_indices():
    slices = decode_slices(read_testfile("rtdose.dcm"))
    ds = pydicom.dcmread(sample_path("rtdose.dcm"))
    assert len(slices) == int(ds.NumberOfFrames) == 15
    assert [s.meta.frame for s in slices] == list(range(15))
    assert all(s.image.mode == "L" and s.image.size == (10, 10) for s in slices)
    frames = np.stack([(np.arange(12, dtype=np.uint16) + 100 * i).reshape(3, 4) for i in range(3)])
    built = decode_slices(dicom_bytes(frames, WindowCenter=150, WindowWidth=300))
    for index, (frame, piece) in enumerate(zip(frames, built, strict=True)):
        assert piece.meta.frame == index
        assert np.array_equal(np.asarray(piece.image), hand_window(frame, 150, 300))
    assert decode_slices(read_testfile("CT_small.dcm"))[0].meta.frame is None


def test_multi_frame_is_refused_by_the_single_image_path():
    with pytest.raises(ImageDecodeError, match="predict_series"):
        load_model_input(read_testfile("rtdose.dcm"), 32, 1)


def test_rgb_dicom_becomes_an_8bit_rgb_picture():
    rgb = decode_slices(read_testfile("SC_rgb_rle.dcm"))[0].image
    assert rgb.mode == "RGB"
    expected = pydicom.dcmread(sample_path("SC_rgb_rle.dcm")).pixel_array
    assert np.array_equal(np.asarray(rgb), expected)
    deep = decode_slices(read_testfile("SC_rgb_rle_16bit.dcm"))[0].image
    expected16 = pydicom.dcmread(sample_path("SC_rgb_rle_16bit.dcm")).pixel_array
    assert np.array_equal(np.asarray(deep), (expected16 >> 8).astype(np.uint8))
    ybr = decode_slices(read_testfile("SC_rgb_jpeg_dcmtk.dcm"))[0].image  # YBR_FULL, lossy JPEG
    assert ybr.mode == "RGB"
    # Lossy, so close to the RGB original rather than equal: red stripe at the top.
    assert np.abs(np.asarray(ybr, np.int16)[5, 50] - [255, 0, 0]).max() < 8
    assert to_model_input(ybr, 32, 3).shape == (32, 32, 3)


@pytest.mark.parametrize("name", MR_LOSSLESS)
def test_every_lossless_encoding_gives_identical_pixels(name):
    reference = decode_slices(read_testfile("MR_small.dcm"))[0].image
    piece = decode_slices(read_testfile(name))[0]
    assert np.array_equal(np.asarray(piece.image), np.asarray(reference))
    for channels in (1, 3):
        assert np.array_equal(
            to_model_input(piece.image, 48, channels), to_model_input(reference, 48, channels)
        )
    assert np.array_equal(
        load_model_input(read_testfile(name), 48, 1), to_model_input(reference, 48, 1)
    )
