"""What the smoke sends: the contract's probe inputs (ct_contract.smoke_probe) as uploads."""

from __future__ import annotations

import uuid

from ct_contract.smoke_probe import SERIES_SLICES, series_names, smoke_inputs, synthetic_png

__all__ = [
    "SERIES_SLICES",
    "multipart",
    "multipart_files",
    "series_names",
    "smoke_inputs",
    "synthetic_png",
]


def multipart(field: str, filename: str, content: bytes, content_type: str) -> tuple[bytes, str]:
    """One file as a multipart/form-data body; returns (body, Content-Type)."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
    ).encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def multipart_files(field: str, files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """Picture files under one field (a series upload); returns (body, Content-Type). The part's
    type follows the name (.png, else JPEG)."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{name}"\r\nContent-Type: {_picture_type(name)}\r\n\r\n'
        ).encode()
        + data
        + b"\r\n"
        for name, data in files
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _picture_type(name: str) -> str:
    return "image/png" if name.lower().endswith(".png") else "image/jpeg"
