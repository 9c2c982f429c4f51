"""Deterministic result UIDs: the same source series and model version give the same UIDs, so a
re-sent study replaces its results in the PACS instead of adding copies.

A UID is 2.25.<a 128-bit integer> (the UUID-derived root, PS3.5 B.2); the integer is the first
128 bits of a SHA-256 over the inputs (pydicom's generate_uid ignores its entropy sources under
the 2.25 root and would draw a random UUID)."""

from __future__ import annotations

import hashlib

from pydicom.uid import UID

KINDS = ("sr-series", "sr-instance", "sc-series", "sc-instance")


def result_uid(source_series_uid: str, task: str, version: int, kind: str) -> UID:
    """The UID of one result (`kind`) of one source series and model version."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    text = "\x00".join(["ct-triage-dicom-node", source_series_uid, task, str(version), kind])
    number = int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big")
    return UID(f"2.25.{number}")
