"""The gateway's per-request stages in isolation, on the 650 px sample JPEG (median of 300 runs).

    .venv/bin/python benchmarks/stage_timings.py

Multipart parsing (werkzeug), decoding, letterboxing to the model's 192 px input, and building the
TensorProto: the parts of a request that do not depend on the network or the model server.
"""

from __future__ import annotations

import io

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from ct_contract.preprocess import decode_single, to_model_input
from ct_local.bench.inputs import SAMPLE_IMAGE as SAMPLE
from ct_local.bench.timing import percentile, timed
from gateway.tfs.tensors import make_tensor_proto

SIZE, RUNS = 192, 300


def median_ms(step) -> float:
    return percentile(sorted(timed(step, RUNS)), 0.5) * 1000


def parse_multipart(data: bytes) -> bytes:
    environ = EnvironBuilder(
        method="POST", data={"image": (io.BytesIO(data), "a.jpg")}
    ).get_environ()
    return Request(environ).files["image"].read()


def main() -> None:
    data = SAMPLE.read_bytes()
    image = decode_single(data).image
    pixels = to_model_input(image, SIZE, 1)[None]
    print(f"{SAMPLE.name}: {len(data)} bytes, {image.size[0]}x{image.size[1]} px")
    for name, step in (
        ("multipart parse (werkzeug, incl. building the request)", lambda: parse_multipart(data)),
        ("decode (picture/DICOM detection + Pillow)", lambda: decode_single(data)),
        (f"letterbox to {SIZE} px", lambda: to_model_input(image, SIZE, 1)),
        ("TensorProto", lambda: make_tensor_proto(pixels)),
    ):
        print(f"{name:<56} {median_ms(step):6.2f} ms")


if __name__ == "__main__":
    main()
