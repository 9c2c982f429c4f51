"""DICOM objects for the tests: pydicom's own test files, and small datasets built with pydicom
(with patient tags when asked, to prove none of them leaves)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from ct_contract.preprocess import (
    decode_slices,
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


def with_transfer_syntax(uid: UID) -> bytes:
    """MR_small's pixels encapsulated and labelled with `uid` (a syntax we may not decode)."""
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PixelData = encapsulate([ds.PixelData])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = uid
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


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
