"""The files of a .zip series, read in memory with every zip-bomb guard before and while inflating.

Nothing is extracted to disk, so entry names never become paths; they are still checked (no
absolute paths, no '..', no control characters) because they come back in the answer as slice
names. Limits: entries, declared and actual uncompressed bytes (in total), compression ratio per
entry, no nested archives, no encryption. Declared sizes are not trusted: inflation stops one
chunk past what was declared or allowed.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from gateway.errors import PayloadTooLargeError, UnprocessableImageError

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty archive's end record
MAX_RATIO = 250  # uncompressed / compressed per entry; CT slices with much air reach ~20
MAX_NAME_CHARS = 255
_CHUNK = 1 << 16
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
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError, OSError) as exc:
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
