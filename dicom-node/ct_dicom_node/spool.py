"""The spool: every received instance is on disk (written, fsynced, renamed) before the C-STORE
is acknowledged, so nothing acknowledged is lost if the process dies; on restart the series found
in the spool are assembled again.

Layout under the spool folder: incoming/<series key>/<sop key>.dcm (keys are SHA-256 digests of
the UIDs: file names carry no identifier), done/<series key>/ (instances of scored series, kept
for `keep_done_s` so that late instances of a series are scored together with the earlier ones),
failed/<series key>/ (series the gateway refused, kept for an operator), outbox/<sop key>.dcm
(result objects until the destination accepts them)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def key_of(uid: str) -> str:
    """A file-name-safe digest of a UID (32 hex characters)."""
    return hashlib.sha256(uid.encode()).hexdigest()[:32]


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that `path` is either absent or complete, and durable."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class SpooledSeries:
    """A series found in the spool: its key, its files, and when they arrived (file mtimes)."""

    key: str
    files: tuple[Path, ...]
    first_s: float
    last_s: float
    size: int


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.failed = self.root / "failed"
        self.finished = self.root / "done"
        self.outbox = self.root / "outbox"
        for folder in (self.incoming, self.failed, self.finished, self.outbox):
            folder.mkdir(parents=True, exist_ok=True)

    def put(self, series_uid: str, sop_uid: str, data: bytes) -> Path:
        """Store one instance (a whole DICOM file) durably; a re-sent instance replaces itself."""
        folder = self.incoming / key_of(series_uid)
        folder.mkdir(exist_ok=True)
        path = folder / f"{key_of(sop_uid)}.dcm"
        write_atomic(path, data)
        return path

    def series(self) -> Iterator[SpooledSeries]:
        """Every series waiting in incoming/ (what a restart resumes); leftover temp files go."""
        for folder in sorted(p for p in self.incoming.iterdir() if p.is_dir()):
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
            files = tuple(sorted(folder.glob("*.dcm")))
            if not files:
                folder.rmdir()
                continue
            stats = [f.stat() for f in files]
            yield SpooledSeries(
                key=folder.name,
                files=files,
                first_s=min(s.st_mtime for s in stats),
                last_s=max(s.st_mtime for s in stats),
                size=sum(s.st_size for s in stats),
            )

    def files_of(self, key: str) -> tuple[Path, ...]:
        return tuple(sorted((self.incoming / key).glob("*.dcm")))

    def series_files(self, key: str) -> tuple[Path, ...]:
        """What to score: the waiting instances plus the series' scored ones still kept in done/
        (a re-sent instance: the waiting copy)."""
        waiting = {p.name: p for p in self.files_of(key)}
        kept = {p.name: p for p in (self.finished / key).glob("*.dcm")}
        return tuple(sorted({**kept, **waiting}.values(), key=lambda p: p.name))

    def done(self, key: str, files: tuple[Path, ...]) -> None:
        """Move the scored waiting files of a series to done/ (instances arrived since stay)."""
        target = self.finished / key
        target.mkdir(exist_ok=True)
        for path in files:
            if path.parent == self.incoming / key and path.exists():
                os.replace(path, target / path.name)
        os.utime(target)
        _rmdir_if_empty(self.incoming / key)

    def forget(self, key: str, files: tuple[Path, ...]) -> None:
        """Delete processed files of a series that is not scored (no rule matched)."""
        for path in files:
            path.unlink(missing_ok=True)
        _rmdir_if_empty(self.incoming / key)

    def sweep(self, now_s: float, keep_s: float) -> int:
        """Delete the done/ series last scored more than `keep_s` ago; how many."""
        old = [
            d for d in self.finished.iterdir() if d.is_dir() and d.stat().st_mtime < now_s - keep_s
        ]
        for folder in old:
            shutil.rmtree(folder, ignore_errors=True)
        return len(old)

    def keep_failed(self, key: str, files: tuple[Path, ...]) -> Path:
        """Move the processed files of a refused series to failed/ for an operator."""
        target = self.failed / key
        target.mkdir(exist_ok=True)
        for path in files:
            if path.exists():
                shutil.move(path, target / path.name)
        _rmdir_if_empty(self.incoming / key)
        return target


def _rmdir_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
