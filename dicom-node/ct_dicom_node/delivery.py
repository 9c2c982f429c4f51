"""Delivery of result objects: written to the spool's outbox first, then sent by C-STORE to the
destination; an object stays (on disk, across restarts) until the destination accepts it, and
each failure waits longer before the next try (exponential backoff, capped)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, dcmread
from pynetdicom import AE

from ct_dicom_node.assembly import backoff_s
from ct_dicom_node.config import Peer
from ct_dicom_node.spool import key_of, write_atomic

log = logging.getLogger(__name__)
# Success, and the warnings that still store the object (coercion, elements discarded, ...).
ACCEPTED = {0x0000, 0xB000, 0xB006, 0xB007}


@dataclass
class Pending:
    attempts: int = 0
    retry_at_s: float = 0.0


class Outbox:
    def __init__(self, folder: Path, initial_s: float, max_s: float) -> None:
        self.folder = Path(folder)
        self.initial_s, self.max_s = initial_s, max_s
        self._state: dict[Path, Pending] = {}
        self._lock = threading.Lock()

    def put(self, ds: Dataset) -> Path:
        """Keep one result object until it is delivered (replacing one with the same UID)."""
        path = self.folder / f"{key_of(str(ds.SOPInstanceUID))}.dcm"
        tmp = self.folder / f".{path.name}.build"
        ds.save_as(tmp, enforce_file_format=True)
        write_atomic(path, tmp.read_bytes())
        tmp.unlink()
        with self._lock:
            self._state[path] = Pending()
        return path

    def waiting(self) -> list[Path]:
        return sorted(self.folder.glob("*.dcm"))

    def due(self, now_s: float) -> list[Path]:
        with self._lock:
            return [p for p in self.waiting() if self._state.get(p, Pending()).retry_at_s <= now_s]

    def delivered(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        with self._lock:
            self._state.pop(path, None)

    def failed(self, path: Path, now_s: float) -> float:
        """Record a failed try; returns the delay before the next one."""
        with self._lock:
            state = self._state.setdefault(path, Pending())
            delay = backoff_s(state.attempts, self.initial_s, self.max_s)
            state.attempts += 1
            state.retry_at_s = now_s + delay
            return delay


Sender = Callable[[list[Path]], dict[Path, bool]]


def c_store_sender(calling_ae: str, peer: Peer, timeout_s: float = 30.0) -> Sender:
    """A sender that stores files in one association; which of them the peer accepted."""

    def send(paths: list[Path]) -> dict[Path, bool]:
        datasets = {path: dcmread(path) for path in paths}
        ae = AE(calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
        for ds in datasets.values():
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
        if not assoc.is_established:
            log.warning("destination association failed", extra={"destination": peer.ae_title})
            return dict.fromkeys(paths, False)
        try:
            return {path: _stored(assoc.send_c_store(ds)) for path, ds in datasets.items()}
        finally:
            assoc.release()

    return send


def _stored(status: Dataset) -> bool:
    return bool(status) and int(status.get("Status", -1)) in ACCEPTED
