"""DICOM intake (ct_contract/dicom.py through ct_contract/preprocess.py) on real files.

pydicom's own test files (shipped inside the package, no download) and small datasets built here
with pydicom: Hounsfield units, MONOCHROME1, multi-frame, windows, every lossless encoding of one
image, unsupported transfer syntaxes, truncation, header caps, detection by content, slice
positions, and that no patient data leaves in a slice, an error or a log line.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    HEVCMP51,
    MPEG2MPML,
    UID,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from ct_contract.dicom import Window, window_to_uint8
from ct_contract.preprocess import (
    ImageDecodeError,
    ImageTooLargeError,
    UnsupportedTransferSyntaxError,
    _to_8bit,
    decode_image,
    decode_slices,
    load_model_input,
    to_model_input,
)

MR_LOSSLESS = [
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_implicit.dcm",
    "MR_small_padded.dcm",
]
PHI = {
    "PatientName": "Zyxwvu^Qponml",
    "PatientID": "PID-8675309",
    "PatientBirthDate": "19610704",
    "InstitutionName": "Saint Hypothetical Infirmary",
    "ReferringPhysicianName": "Drqwerty^Asdfgh",
    "AccessionNumber": "ACC55501234",
    "StudyDescription": "Secret head study",
    "OtherPatientIDs": "OTHER-4242",
}


def read_testfile(name: str) -> bytes:
    with open(get_testdata_file(name), "rb") as file:
        return file.read()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(decode_slices(data)[0].image)


def dicom_bytes(
    arr: np.ndarray,
    photometric: str = "MONOCHROME2",
    transfer_syntax: UID = ExplicitVRLittleEndian,
    **attrs: object,
) -> bytes:
    """A Secondary Capture object holding `arr` ([rows, cols] or [frames, rows, cols]) natively."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.Rows, ds.Columns = arr.shape[-2:]
    if arr.ndim == 3:
        ds.NumberOfFrames = arr.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = arr.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(arr.dtype.kind == "i")
    ds.PixelData = arr.tobytes()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def edited(name: str, **attrs: object) -> bytes:
    """A pydicom test file with attributes set (None deletes one), written back."""
    ds = pydicom.dcmread(get_testdata_file(name))
    for keyword, value in attrs.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def hand_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    scaled = (values.astype(np.float64) - (center - width / 2)) / width * 255
    return np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)


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
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
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
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
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
    ds = pydicom.dcmread(get_testdata_file("6278"))
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    img = pixels(read_testfile("6278"))
    assert img[ds.pixel_array == ds.pixel_array.max()].max() == img.min()


# ----------------------------------------------------------------------------- frames, colour


def test_multi_frame_gives_one_slice_per_frame_with_frame_indices():
    slices = decode_slices(read_testfile("rtdose.dcm"))
    ds = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
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
    expected = pydicom.dcmread(get_testdata_file("SC_rgb_rle.dcm")).pixel_array
    assert np.array_equal(np.asarray(rgb), expected)
    deep = decode_slices(read_testfile("SC_rgb_rle_16bit.dcm"))[0].image
    expected16 = pydicom.dcmread(get_testdata_file("SC_rgb_rle_16bit.dcm")).pixel_array
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


def with_transfer_syntax(uid: UID) -> bytes:
    """MR_small's pixels encapsulated and labelled with `uid` (a syntax we may not decode)."""
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PixelData = encapsulate([ds.PixelData])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = uid
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


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
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
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
    expected = _to_8bit(decode_image(data))
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


# ----------------------------------------------------------------------------- meta


def oblique_slice(index: int, spacing: float, with_orientation: bool = True) -> bytes:
    """Slices of a series tilted 30 degrees about the patient's x axis."""
    angle = np.deg2rad(30)
    row = [1.0, 0.0, 0.0]
    column = [0.0, float(np.cos(angle)), float(np.sin(angle))]
    normal = np.cross(row, column)
    origin = np.array([-120.0, -100.0, 40.0])
    attrs: dict[str, object] = {
        "ImagePositionPatient": [f"{v:.6f}" for v in origin + index * spacing * normal],
        "InstanceNumber": index + 1,
    }
    if with_orientation:
        attrs["ImageOrientationPatient"] = [f"{v:.6f}" for v in row + column]
    return dicom_bytes(np.full((4, 4), index, np.int16), **attrs)


def test_positions_are_projected_on_the_slice_normal():
    metas = [decode_slices(oblique_slice(i, 2.5))[0].meta for i in (3, 0, 2, 1)]
    assert [m.instance for m in metas] == [4, 1, 3, 2]
    base = metas[1].position
    assert [round(m.position - base, 4) for m in metas] == [7.5, 0.0, 5.0, 2.5]
    assert all(m.modality == "CT" and m.series_uid == "1.2.826.0.1.3680043.8.498.1" for m in metas)
    assert decode_slices(oblique_slice(1, 2.5, with_orientation=False))[0].meta.position is None


def test_enhanced_multi_frame_positions_come_from_per_frame_functional_groups():
    frames = np.zeros((3, 2, 2), np.uint8)
    per_frame = []
    for index in range(3):
        position = Dataset()
        position.ImagePositionPatient = [0, 0, 10 * index]
        group = Dataset()
        group.PlanePositionSequence = [position]
        per_frame.append(group)
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared = Dataset()
    shared.PlaneOrientationSequence = [orientation]
    data = dicom_bytes(
        frames, PerFrameFunctionalGroupsSequence=per_frame, SharedFunctionalGroupsSequence=[shared]
    )
    assert [s.meta.position for s in decode_slices(data)] == [0.0, 10.0, 20.0]


def phi_dicom(**extra: object) -> bytes:
    raw = np.arange(64, dtype=np.uint16).reshape(8, 8)
    return dicom_bytes(raw, **PHI, PatientAge="0xx", StudyDate="2001-13-45", **extra)


def assert_no_phi(text: str) -> None:
    for value in PHI.values():
        for part in value.replace("^", " ").split():
            assert part not in text, f"{part!r} leaked"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_patient_data_never_leaves(caplog, capsys):
    caplog.set_level("DEBUG")
    root = Records()  # what a host process (gunicorn) would log: nothing from pydicom
    logging.getLogger().addHandler(root)
    try:
        _decode_phi_objects()
    finally:
        logging.getLogger().removeHandler(root)
    assert not [r for r in root.records if r.name.startswith("pydicom")]
    out = capsys.readouterr()
    assert_no_phi(caplog.text + out.out + out.err)


def _decode_phi_objects() -> None:
    slices = decode_slices(phi_dicom())
    assert_no_phi(repr(slices) + repr([vars(s.meta) for s in slices]))
    assert set(vars(slices[0].meta)) == {"modality", "position", "instance", "series_uid", "frame"}
    refusals = [
        phi_dicom(Rows=60000, Columns=60000),
        edited("CT_small.dcm", PixelData=None, **PHI),
        phi_dicom(PhotometricInterpretation="PALETTE COLOR"),
        phi_dicom(NumberOfFrames="7777").replace(b"7777", b"abc "),
        phi_dicom()[:-9],
    ]
    for data in refusals:
        with pytest.raises(ImageDecodeError) as caught:
            decode_slices(data)
        assert_no_phi(str(caught.value) + repr(caught.value))
