"""What a DICOM slice tells about itself (positions on the slice normal, enhanced multi-frame
functional groups), and that no patient data leaves in a slice, an error or a log line."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from pydicom.dataset import Dataset

from ct_contract.preprocess import (
    ImageDecodeError,
    decode_slices,
)
from tests.fixtures.dicom_files import (
    PHI,
    dicom_bytes,
    edited,
    oblique_slice,
)

# ----------------------------------------------------------------------------- meta


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
    # body_part (BodyPartExamined) is checked against a model's domain; it names no patient
    assert set(vars(slices[0].meta)) == {
        "modality",
        "position",
        "instance",
        "series_uid",
        "frame",
        "body_part",
    }
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
