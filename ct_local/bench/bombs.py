"""Memory bombs against the gateway's decoding, and a worker's peak memory while it meets one.

Each bomb class of issue 17 is built here, in memory, never written to the repository. `measure`
runs one in a fresh child process (`python -m ct_local.bench.bombs KIND`): the child builds the
bomb, resets its peak RSS (`5` to /proc/self/clear_refs), runs the gateway's own intake and
decoding path (gateway.archive, gateway.decoding) as a worker would, and reports the answer's
status, the peak RSS above where it started (VmHWM) and the time. Linux only.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

SIDE = 6000  # a 6000x6000 picture: 36 Mpx, inside the default pixel cap
ZIP_RECORDS = 4_000_000
DEFLATED_ZEROS = 1 << 30


@dataclass(frozen=True)
class Bomb:
    endpoint: str  # "predict" (one file) or "predict_series" (files, or one zip)
    files: list[tuple[str, bytes]]


def png(mode: str, side: int = SIDE) -> bytes:
    """A side x side PNG of mostly black with a sparse grid (so it is not all one value)."""
    img = Image.new(mode, (side, side))
    arr = np.asarray(img).copy()
    arr[::97, ::89] = 200
    out = io.BytesIO()
    Image.fromarray(arr, mode).save(out, "PNG", compress_level=9)
    return out.getvalue()


def j2k_dicom(side: int = SIDE) -> bytes:
    """A side x side 16-bit CT slice in JPEG 2000 (lossless)."""
    from openjpeg.utils import encode_array
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    arr = np.zeros((side, side), np.uint16)
    arr[::97, ::89] = 1000
    codestream = encode_array(arr, bits_stored=16, photometric_interpretation=2, use_mct=False)
    return _dicom(JPEG2000Lossless, side, encapsulate([codestream]))


def deflated_dicom(zeros: int = DEFLATED_ZEROS) -> bytes:
    """A deflated-syntax DICOM object whose dataset inflates to `zeros` bytes of pixel data."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = _dataset(DeflatedExplicitVRLittleEndian, 0)
    head = DicomBytesIO()
    head.write(bytes(128) + b"DICM")
    write_file_meta_info(head, ds.file_meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    element = struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, zeros)
    parts = [head.getvalue(), deflater.compress(body.getvalue() + element)]
    chunk = bytes(1 << 20)
    for _ in range(zeros // len(chunk)):
        parts.append(deflater.compress(chunk))
    parts.append(deflater.flush())
    return b"".join(parts)


def _dicom(syntax: str, side: int, pixel_data: bytes) -> bytes:
    ds = _dataset(syntax, side)
    ds.PixelData = pixel_data
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _dataset(syntax: str, side: int) -> Any:
    """A CT dataset (Rows = Columns = side, 16-bit) with its file meta, without pixel data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    return ds


def zip_directory(records: int = ZIP_RECORDS) -> bytes:
    """One stored entry, then a central directory of `records` records (all naming it) and zip64
    end records that count them: about 47 bytes a record."""
    body = b"x"
    crc = zlib.crc32(body)
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, 1, 1, 1, 0) + b"a" + body
    record = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, 1, 1, 1, 0, 0, 0, 0, 0, 0
    )
    directory = (record + b"a") * records
    start, size = len(local), len(directory)
    end64 = struct.pack(
        "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, records, records, size, start
    )
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, start + size, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return local + directory + end64 + locator + end


def _zipped(files: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return out.getvalue()


def _series(mode: str, count: int, side: int = SIDE) -> Bomb:
    data = png(mode, side)
    return Bomb("predict_series", [(f"slice ({i + 1}).png", data) for i in range(count)])


# The bomb classes, and two loads just under the budget (they must decode, within it).
BOMBS: dict[str, Callable[[], Bomb]] = {
    "deflated-dicom-1GiB": lambda: Bomb("predict", [("bomb.dcm", deflated_dicom())]),
    "png-series-24-grey-6000": lambda: _series("L", 24),
    "png-series-8-rgb-6000": lambda: _series("RGB", 8),
    "j2k-dicom-16bit-6000": lambda: Bomb("predict", [("bomb.dcm", j2k_dicom())]),
    "zip-directory-4M-records": lambda: Bomb("predict_series", [("bomb.zip", zip_directory())]),
    "under-budget: png-series-24-grey-2000": lambda: _series("L", 24, 2000),
    "under-budget: j2k-dicom-16bit-2000": lambda: Bomb("predict", [("ct.dcm", j2k_dicom(2000))]),
    "under-budget: zip of 24 grey 2000": lambda: Bomb(
        "predict_series", [("scan.zip", _zipped(_series("L", 24, 2000).files))]
    ),
}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        match = re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE)
    assert match, f"/proc/self/status has no {field}"
    return int(match.group(1))


def _settings() -> Any:
    """The gateway's defaults (its budget: 1 GiB pod, 2 workers, 4 threads), or the pod limit
    in CT_MEMORY_LIMIT_BYTES when that is set."""
    from gateway.config import Settings

    limit = os.environ.get("CT_MEMORY_LIMIT_BYTES")
    extra = {"CT_MEMORY_LIMIT_BYTES": limit} if limit else {}
    return Settings.from_env({"CT_MODELS": "brain-stroke", **extra})


def _answer(bomb: Bomb, settings: Any) -> tuple[int, str]:
    """What the gateway's intake and decoding make of the bomb: (status, error code or "ok")."""
    from gateway import archive, decoding, intake
    from gateway.archive import Member
    from gateway.errors import ApiError
    from gateway.models.registry import ModelInfo

    info = ModelInfo("brain-stroke", 1, 128, 1, np.dtype("uint8"), ("Normal", "Stroke"), 0.5, 1)
    members = [Member(name, data) for name, data in bomb.files]
    try:
        if bomb.endpoint == "predict":
            decoding.decode(members[0].data, info, settings, max_frames=None, name=None)
        else:
            caps = intake.caps_for(intake.SERIES_ROUTE, settings)
            if len(members) == 1 and archive.is_zip(members[0].data):
                members = archive.read_zip(members[0].data, caps.files, caps.body_bytes)
            decoding.decode_series(members, info, settings, caps.files)
    except ApiError as error:
        return error.status, error.code
    return 200, "ok"


def run_here(kind: str) -> dict:
    """In this process: build the bomb, reset the peak, meet it; the figures as a dict."""
    import gc

    import gateway.app  # noqa: F401  (what a worker has loaded before its first request)

    settings = _settings()
    bomb = BOMBS[kind]()
    _answer(Bomb("predict", [("warm.dcm", j2k_dicom(64))]), settings)  # lazy imports, small
    _answer(_series("L", 2, 64), settings)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM := VmRSS
    start_kb = _status_kb("VmHWM")
    started = time.perf_counter()
    status, code = _answer(bomb, settings)
    seconds = time.perf_counter() - started
    return {
        "kind": kind,
        "status": status,
        "code": code,
        "upload_bytes": sum(len(data) for _, data in bomb.files),
        "peak_bytes": (_status_kb("VmHWM") - start_kb) * 1024,
        "seconds": round(seconds, 3),
        "budget_bytes": settings.decode_budget_bytes,
    }


def measure(kind: str, timeout_s: float = 300) -> dict:
    """run_here in a fresh child process (its own peak, nothing left from other bombs)."""
    out = subprocess.run(
        [sys.executable, "-m", "ct_local.bench.bombs", kind],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(run_here(sys.argv[1])))
