"""Zip directories: the entry count is read from the end records before zipfile parses the
directory (413), and no value in a directory field makes read_zip fail other than 413 or 422
(an overstated compressed size raised EOFError, a 500, before)."""

from __future__ import annotations

import io
import struct
import time
import zipfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ct_local.bench.bombs import zip_directory
from gateway.archive import read_zip
from gateway.errors import ApiError

MAX_ENTRIES, MAX_BYTES = 16, 1 << 20
# The fields a fuzz case rewrites, per record: name -> (offsets in the record, struct format).
# "sizes" sets both sizes at once, as a tampered entry that still looks consistent would.
LOCAL = {
    "compress_size": ((18,), "<L"),
    "file_size": ((22,), "<L"),
    "sizes": ((18, 22), "<L"),
    "name_len": ((26,), "<H"),
}
CENTRAL = {
    "compress_size": ((20,), "<L"),
    "file_size": ((24,), "<L"),
    "sizes": ((20, 24), "<L"),
    "name_len": ((28,), "<H"),
    "extra_len": ((30,), "<H"),
    "local_offset": ((42,), "<L"),
}
END = {
    "entries_here": ((8,), "<H"),
    "entries": ((10,), "<H"),
    "counts": ((8, 10), "<H"),
    "size": ((12,), "<L"),
    "offset": ((16,), "<L"),
}
RECORDS = {b"PK\x03\x04": LOCAL, b"PK\x01\x02": CENTRAL, b"PK\x05\x06": END}


def small_zip(count: int = 3, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for i in range(count):
            archive.writestr(f"slice ({i + 1}).png", bytes(range(256)) * (i + 2))
    return out.getvalue()


def field_positions(data: bytes) -> list[tuple[str, tuple[int, ...], str]]:
    """(field, its positions in `data`, format) for every field of every record."""
    found = []
    for signature, fields in RECORDS.items():
        at = data.find(signature)
        while at >= 0:
            found += [
                (name, tuple(at + o for o in offs), fmt) for name, (offs, fmt) in fields.items()
            ]
            at = data.find(signature, at + 4)
    return found


def status_of(data: bytes) -> int:
    try:
        read_zip(data, MAX_ENTRIES, MAX_BYTES)
    except ApiError as error:
        return error.status
    return 200


def test_overstated_compressed_size_is_a_bad_archive():
    data = bytearray(small_zip(1, zipfile.ZIP_STORED))
    for name, offsets, fmt in field_positions(bytes(data)):
        if name == "sizes":  # a stored entry: both sizes say the same
            for at in offsets:
                struct.pack_into(fmt, data, at, struct.unpack_from(fmt, data, at)[0] + 1000)
    with pytest.raises(EOFError):  # what zipfile does, and what answered 500
        zipfile.ZipFile(io.BytesIO(bytes(data))).read("slice (1).png")
    with pytest.raises(ApiError) as caught:
        read_zip(bytes(data), MAX_ENTRIES, MAX_BYTES)
    assert (caught.value.status, caught.value.code) == (422, "bad_archive")


def test_the_entry_count_is_read_before_the_directory_is_parsed():
    data = zip_directory(200_000)  # 9.4 MB of directory records, zip64 end records
    started = time.perf_counter()
    with pytest.raises(ApiError) as caught:
        read_zip(data, MAX_ENTRIES, MAX_BYTES)
    assert (caught.value.status, caught.value.code) == (413, "too_many_slices")
    assert "200000 entries" in caught.value.message
    assert time.perf_counter() - started < 0.05  # zipfile alone takes ~1 s on this directory


def test_a_count_that_understates_the_directory_is_caught_by_its_size():
    data = bytearray(zip_directory(50_000))
    end = data.rfind(b"PK\x06\x06")
    struct.pack_into("<2Q", data, end + 24, 1, 1)  # zip64 counts say 1; the directory is 2.3 MB
    with pytest.raises(ApiError) as caught:
        read_zip(bytes(data), MAX_ENTRIES, MAX_BYTES)
    assert caught.value.status == 413


@given(
    st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
    st.data(),
)
def test_any_directory_field_value_is_a_413_or_422_never_a_crash(method, draw):
    data = bytearray(small_zip(3, method))
    positions = field_positions(bytes(data))
    for _ in range(draw.draw(st.integers(1, 3))):
        _, offsets, fmt = draw.draw(st.sampled_from(positions))
        top = (1 << (8 * struct.calcsize(fmt))) - 1
        old = struct.unpack_from(fmt, data, offsets[0])[0]
        value = draw.draw(
            st.one_of(
                st.integers(0, top),
                st.sampled_from([0, 1, top, top - 1]),
                st.integers(-64, 64).map(lambda d, old=old, top=top: min(max(old + d, 0), top)),
            )
        )
        for at in offsets:
            struct.pack_into(fmt, data, at, value)
    assert status_of(bytes(data)) in (200, 413, 422)
