"""What the benchmarks send: the sample JPEG, one scan's slices, multipart and zip bodies."""

from __future__ import annotations

import io
import uuid
import zipfile

from ct_local.paths import DATASETS, SAMPLES

SAMPLE_IMAGE = SAMPLES / "brain-stroke_normal.jpg"  # a real 650 px JPEG


class BenchInputError(Exception):
    """An input the benchmark needs is absent."""


def multipart(data: bytes) -> tuple[bytes, str]:
    """One `image` part holding `data`; returns (body, Content-Type)."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def scan_files(scan: str, slices: int) -> list[tuple[str, bytes]]:
    """The first `slices` slices of a Stroke scan of brain-stroke-ct, as (name, bytes)."""
    folder = DATASETS / "brain-stroke-ct" / "Stroke"
    paths = sorted(folder.glob(f"{scan} (*).jpg"))[:slices]
    if not paths:
        raise BenchInputError(f"no slices of scan {scan} in {folder}")
    return [(p.name, p.read_bytes()) for p in paths]


def zipped(files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buf.getvalue()
