"""STOW-RS (DICOMweb store, PS3.18 10.5): `POST /studies` with multipart/related;
type="application/dicom" parts, each a DICOM Part 10 file, fed to the same spool and assembly as
C-STORE. Off unless `stow_token_file` is configured (SHA-256 hex digests of the accepted bearer
tokens, one per line, like the gateway's CT_AUTH_TOKENS_FILE); a wrong or missing token gets 401.

The answer is a DICOM JSON dataset: ReferencedSOPSequence (stored) and FailedSOPSequence (with a
FailureReason: 0xA700 out of resources/limits, 0xC000 unreadable, 0x0122 SOP class not
supported, 0x0290 transfer syntax not supported); 200 all stored, 202 some, 409 none."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import hmac
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from ct_dicom_node.scp import STORAGE, TRANSFER_SYNTAXES, Refuse

UNSUPPORTED_CLASS, UNSUPPORTED_SYNTAX = 0x0122, 0x0290
OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0xA700, 0xC000
Store = Callable[[str, str, bytes], None]


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict


class StowError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def authorized(header: str | None, token_file: Path | None) -> bool:
    """Whether `Authorization: Bearer <token>` names a token whose digest is in the file."""
    if token_file is None or not header or not header.startswith("Bearer "):
        return False
    digest = hashlib.sha256(header[7:].strip().encode()).hexdigest()
    try:
        lines = token_file.read_text().splitlines()
    except OSError:
        return False
    known = [ln.strip().lower() for ln in lines if ln.strip() and not ln.startswith("#")]
    return any([hmac.compare_digest(digest, k) for k in known])  # a list: compare every one


def parts(content_type: str, body: bytes) -> list[bytes]:
    """The application/dicom parts of a multipart/related body."""
    if not content_type.lower().startswith("multipart/related"):
        raise StowError(415, 'expected multipart/related; type="application/dicom"')
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise StowError(400, "no multipart boundary")
    found = [p for p in message.iter_parts() if p.get_content_type() == "application/dicom"]
    if not found:
        raise StowError(400, "no application/dicom part")
    return [p.get_payload(decode=True) or b"" for p in found]


def store_all(files: list[bytes], store: Store) -> Answer:
    stored, failed = [], []
    for data in files:
        outcome = _store_one(data, store)
        (stored if outcome[2] is None else failed).append(outcome)
    body: dict = {}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": [_ref(c, i) for c, i, _ in stored]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": [_ref(c, i, r) for c, i, r in failed]}
    status = 200 if not failed else (202 if stored else 409)
    return Answer(status, body)


def _store_one(data: bytes, store: Store) -> tuple[str, str, int | None]:
    try:
        ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
        sop_class, sop = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
        series, syntax = str(ds.SeriesInstanceUID), ds.file_meta.TransferSyntaxUID
    except (InvalidDicomError, AttributeError, KeyError, ValueError, EOFError):
        return "", "", CANNOT_UNDERSTAND
    if sop_class not in STORAGE:
        return sop_class, sop, UNSUPPORTED_CLASS
    if syntax not in TRANSFER_SYNTAXES:
        return sop_class, sop, UNSUPPORTED_SYNTAX
    try:
        store(series, sop, data)
    except (Refuse, OSError):
        return sop_class, sop, OUT_OF_RESOURCES
    return sop_class, sop, None


def _ref(sop_class: str, sop: str, reason: int | None = None) -> dict:
    item = {}
    if sop_class:
        item["00081150"] = {"vr": "UI", "Value": [sop_class]}
    if sop:
        item["00081155"] = {"vr": "UI", "Value": [sop]}
    if reason is not None:
        item["00081197"] = {"vr": "US", "Value": [reason]}
    return item
