"""Deterministic result UIDs: the same source series and model version give the same UIDs, so a
re-sent study replaces its results in the PACS instead of adding copies."""

from __future__ import annotations

from pydicom.uid import UID, generate_uid

KINDS = ("sr-series", "sr-instance", "sc-series", "sc-instance")


def result_uid(source_series_uid: str, task: str, version: int, kind: str) -> UID:
    """A 2.25 UID hashed from the source series UID, the task, the model version and the kind."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    sources = ["ct-triage-dicom-node", source_series_uid, task, str(version), kind]
    return generate_uid(prefix=None, entropy_srcs=sources)
