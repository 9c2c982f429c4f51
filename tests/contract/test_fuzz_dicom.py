"""Property-based fuzzing of DICOM intake (ct_contract.preprocess.decode_slices on DICOM bytes).

Contract: on any mutation of a real DICOM file (byte flips, truncations, insertions, deletions,
header values changed to anything: huge Rows, zero or negative BitsAllocated, odd photometric
interpretations, NumberOfFrames "abc", ...) decode_slices either returns well-formed slices or
raises ImageDecodeError (or a subclass), within a bounded time. Derandomized, as
tests/gateway/test_fuzz_intake.py.
"""

from __future__ import annotations

import contextlib
import io
import signal
import time
from collections.abc import Iterator

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import strategies as st
from pydicom.dataelem import DataElement

from ct_contract.preprocess import DecodedSlice, ImageDecodeError, decode_slices, load_model_input
from tests.fixtures.common import fuzz_settings
from tests.fixtures.dicom_files import (
    CT_SMALL,
    MR_COMPRESSED,
    MR_LOSSLESS,
    OTHER_SHAPES,
    RGB_JPEG,
    read_testfile,
)

SEEDS = [CT_SMALL, *MR_LOSSLESS, *RGB_JPEG, *OTHER_SHAPES]
MAX_PIXELS = 2_000_000  # mutated headers may ask for large but legal allocations
MAX_FRAMES = 64
CALL_LIMIT_S = 5.0  # one decode of these small files takes milliseconds
# Header elements the decoder depends on, by keyword, with the VRs a mutation may write them as.
NUMBERS = ["Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "SamplesPerPixel"]
NUMBERS += ["PixelRepresentation", "PlanarConfiguration"]
TEXTS = ["PhotometricInterpretation", "NumberOfFrames", "RescaleSlope", "RescaleIntercept"]
TEXTS += ["WindowCenter", "WindowWidth", "ImagePositionPatient", "ImageOrientationPatient"]
TEXTS += ["InstanceNumber", "Modality", "SeriesInstanceUID"]
ODD_TEXTS = [
    "abc",
    "-1",
    "0",
    "1e9",
    "nan",
    "inf",
    "-inf",
    "65536",
    "4294967296",
    "PALETTE COLOR",
    "YBR_PARTIAL_420",
    "MONOCHROME1",
    "RGB",
    "1\\2\\3",
    "1\\0\\0\\0\\1\\0",
    "",
]


SEED_BYTES = {name: read_testfile(name) for name in SEEDS}
SEED_BYTES["MR_small no preamble"] = SEED_BYTES["MR_small.dcm"][132:]


def fuzz(examples: int):
    return fuzz_settings(examples, suppress=[HealthCheck.too_slow, HealthCheck.data_too_large])


@contextlib.contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts a call that runs past `seconds`."""

    def expire(signum, frame):
        raise TimeoutError(f"decode took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_decodes_or_refuses(data: bytes) -> list[DecodedSlice] | None:
    """The contract: well-formed slices or ImageDecodeError, in bounded time; never else."""
    start = time.monotonic()
    with bounded(CALL_LIMIT_S):
        try:
            slices = decode_slices(data, max_pixels=MAX_PIXELS, max_frames=MAX_FRAMES)
        except ImageDecodeError:
            slices = None
        try:
            arr = load_model_input(data, 24, 1, max_pixels=MAX_PIXELS)
            assert arr.shape == (24, 24, 1) and arr.dtype == np.uint8
        except ImageDecodeError:
            pass
    assert time.monotonic() - start < CALL_LIMIT_S
    for piece in slices or []:
        assert piece.image.mode in ("L", "RGB") and min(piece.image.size) >= 1
        assert piece.image.width * piece.image.height <= MAX_PIXELS
    if slices:
        assert len(slices) <= MAX_FRAMES
    return slices


def test_every_seed_decodes() -> None:
    for name, data in SEED_BYTES.items():
        assert assert_decodes_or_refuses(data), name


seeds = st.sampled_from(sorted(SEED_BYTES))


@fuzz(500)
@given(seeds, st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_byte_flips(name: str, flips: list[tuple[float, int]]) -> None:
    data = bytearray(SEED_BYTES[name])
    for where, value in flips:
        data[min(int(where * len(data)), len(data) - 1)] = value
    assert_decodes_or_refuses(bytes(data))


@fuzz(400)
@given(seeds, st.floats(0, 1), st.floats(0, 1), st.binary(max_size=64))
def test_truncations_insertions_and_deletions(name: str, cut: float, at: float, blob: bytes):
    data = SEED_BYTES[name]
    assert_decodes_or_refuses(data[: int(cut * len(data))])
    where = int(at * len(data))
    assert_decodes_or_refuses(data[:where] + blob + data[where:])
    assert_decodes_or_refuses(data[:where] + data[where + len(blob) + 1 :])


def rewritten(name: str, changes: list[tuple[str, str, object]]) -> bytes | None:
    """The seed with header elements replaced (VR may differ from the dictionary's) or deleted."""
    ds = pydicom.dcmread(io.BytesIO(SEED_BYTES[name]), force=True)
    for keyword, vr, value in changes:
        tag = pydicom.datadict.tag_for_keyword(keyword)
        if vr == "delete":
            ds.pop(tag, None)
        else:
            ds[tag] = DataElement(tag, vr, value)
    buffer = io.BytesIO()
    try:
        ds.save_as(buffer)
    except Exception:  # pydicom refuses to write some combinations: nothing to decode then
        return None
    return buffer.getvalue()


number_changes = st.tuples(
    st.sampled_from(NUMBERS),
    st.sampled_from(["US", "SS", "delete"]),
    st.one_of(
        st.sampled_from([0, 1, 2, 3, 7, 8, 12, 15, 16, 31, 32, 33, 64, 255]),
        st.integers(0, 65535),
    ),
)
text_changes = st.tuples(
    st.sampled_from(TEXTS),
    st.sampled_from(["LO", "CS", "delete"]),
    st.one_of(st.sampled_from(ODD_TEXTS), st.text("0123456789.-+eE\\ abcXYZ_", max_size=24)),
)


@fuzz(500)
@given(seeds, st.lists(st.one_of(number_changes, text_changes), min_size=1, max_size=4))
def test_header_values_changed_to_anything(name: str, changes) -> None:
    signed = [
        (keyword, vr, value - 32768 if vr == "SS" else value) for keyword, vr, value in changes
    ]
    data = rewritten(name, signed)
    assume(data is not None)
    assert_decodes_or_refuses(data)


@pytest.mark.parametrize("rows, columns", [(65535, 65535), (0, 64), (64, 0), (2000, 2000)])
def test_header_sizes_that_do_not_match_the_pixel_data(rows: int, columns: int) -> None:
    for name in (CT_SMALL, *MR_COMPRESSED):
        data = rewritten(name, [("Rows", "US", rows), ("Columns", "US", columns)])
        assert data is not None
        with pytest.raises(ImageDecodeError):
            decode_slices(data, max_pixels=MAX_PIXELS)
