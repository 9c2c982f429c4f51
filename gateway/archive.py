"""The files of a .zip series, read in memory with every zip-bomb guard before and while inflating.

Nothing is extracted to disk, so entry names never become paths; they are still checked (no
absolute paths, no '..', no control characters) because they come back in the answer as slice
names. Limits: entries, declared and actual uncompressed bytes (in total), compression ratio per
entry, no nested archives, no encryption. Declared sizes are not trusted: inflation stops one
chunk past what was declared or allowed.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

from gateway.errors import PayloadTooLargeError, UnprocessableImageError

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty archive's end record
MAX_RATIO = 250  # uncompressed / compressed per entry; CT slices with much air reach ~20
MAX_NAME_CHARS = 255
_CHUNK = 1 << 16
# End-of-central-directory records (APPNOTE 4.3.14-16), found as zipfile finds them: the EOCD
# in the last 22 bytes, else the last one within a maximal comment of the end; a zip64 locator
# right before it points to the zip64 EOCD, right before the locator.
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_MAX_COMMENT = 0xFFFF
# A directory record: 46 fixed bytes, the name (at most MAX_NAME_CHARS characters, 4 bytes each in
# UTF-8) and room for extra fields (zip64 sizes, timestamps, owners) and a comment.
_MAX_RECORD_BYTES = 46 + 4 * MAX_NAME_CHARS + 1024
# Files that archivers and operating systems add and that are not slices.
_SKIPPED_NAMES = frozenset({"dicomdir", "thumbs.db", "desktop.ini", ".ds_store"})


@dataclass(frozen=True)
class Member:
    name: str
    data: bytes


def is_zip(data: bytes) -> bool:
    return data[:4] in ZIP_MAGIC


def read_zip(data: bytes, max_entries: int, max_total_bytes: int) -> list[Member]:
    """The slice files in a zip; 413 over a limit, 422 for a broken, nested or encrypted archive."""
    check_directory(data, max_entries)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise UnprocessableImageError(f"not a readable zip archive: {exc}", "bad_archive") from None
    if len(infos) > max_entries:
        raise PayloadTooLargeError(
            f"zip has {len(infos)} entries, more than the {max_entries} allowed", "too_many_slices"
        )
    wanted = [info for info in infos if _is_slice(info)]
    declared = sum(info.file_size for info in wanted)
    if declared > max_total_bytes:
        raise PayloadTooLargeError(
            f"zip would inflate to {declared} bytes, more than the {max_total_bytes} allowed"
        )
    members, budget = [], max_total_bytes
    for info in wanted:
        member = _read_member(archive, info, budget)
        budget -= len(member.data)
        members.append(member)
    if not members:
        raise UnprocessableImageError("the zip holds no files", "empty_series")
    return members


def check_directory(data: bytes, max_entries: int) -> None:
    """413 when the end records declare more than `max_entries` entries, or a central directory
    larger than that many records can fill: zipfile parses the whole directory (every record it
    holds, whatever the count says) before anyone can count its entries. No end record: left to
    zipfile (422)."""
    end = _end_records(data)
    if end is None:
        return
    entries, directory_bytes = end
    if entries > max_entries:
        raise PayloadTooLargeError(
            f"zip has {entries} entries, more than the {max_entries} allowed", "too_many_slices"
        )
    if directory_bytes > max_entries * _MAX_RECORD_BYTES:
        raise PayloadTooLargeError(
            f"zip's central directory is {directory_bytes} bytes, more than {max_entries} "
            "entries need",
            "too_many_slices",
        )


def _end_records(data: bytes) -> tuple[int, int] | None:
    """(entries, central directory bytes) from the end records, the larger of the 32-bit and
    zip64 figures; None without an end record."""
    at = len(data) - _EOCD.size
    if at < 0:
        return None
    if data[at : at + 4] != b"PK\x05\x06":
        at = data.rfind(b"PK\x05\x06", max(0, at - _MAX_COMMENT), at)
        if at < 0 or at + _EOCD.size > len(data):
            return None
    _, _, _, here, total, size, _, _ = _EOCD.unpack_from(data, at)
    entries, directory = max(here, total), size
    locator = at - _ZIP64_LOCATOR.size
    if locator >= 0 and data[locator : locator + 4] == b"PK\x06\x07":
        record = locator - _ZIP64_EOCD.size
        if record >= 0 and data[record : record + 4] == b"PK\x06\x06":
            fields = _ZIP64_EOCD.unpack_from(data, record)
            entries = max(entries, fields[6], fields[7])
            directory = max(directory, fields[8])
    return entries, directory


def _is_slice(info: zipfile.ZipInfo) -> bool:
    _check_name(info.filename)
    if info.is_dir():
        return False
    parts = info.filename.split("/")
    base = parts[-1]
    return not (parts[0] == "__MACOSX" or base.startswith("._") or base.lower() in _SKIPPED_NAMES)


def _check_name(name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    unsafe = (
        not name
        or len(name) > MAX_NAME_CHARS
        or name.startswith(("/", "\\"))
        or (len(parts[0]) == 2 and parts[0][1] == ":")  # C:\...
        or ".." in parts
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
    )
    if unsafe:
        raise UnprocessableImageError(
            f"zip entry name {name[:80]!r} is not a safe relative path", "bad_archive"
        )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> Member:
    if info.flag_bits & 0x1:
        raise UnprocessableImageError(f"zip entry {info.filename!r} is encrypted", "bad_archive")
    if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
        raise PayloadTooLargeError(
            f"zip entry {info.filename!r} inflates more than {MAX_RATIO}x (a zip bomb?)"
        )
    limit = min(info.file_size, budget)
    try:
        with archive.open(info) as stream:
            data = _read_capped(stream, limit, info)
    except (PayloadTooLargeError, UnprocessableImageError):
        raise
    except (
        zipfile.BadZipFile,
        NotImplementedError,
        RuntimeError,
        ValueError,
        OSError,
        EOFError,  # a compressed size that overstates what the archive holds
        zlib.error,
    ) as exc:
        raise UnprocessableImageError(
            f"cannot read zip entry {info.filename!r}: {exc}", "bad_archive"
        ) from None
    if is_zip(data):
        raise UnprocessableImageError(
            f"zip entry {info.filename!r} is itself an archive; nested archives are not accepted",
            "bad_archive",
        )
    return Member(info.filename, data)


def _read_capped(stream, limit: int, info: zipfile.ZipInfo) -> bytes:
    chunks, size = [], 0
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(
                f"zip entry {info.filename!r} inflates past its declared size or the series cap"
            )
        chunks.append(chunk)
