"""The probe: load model version directories and run contract signatures on fixed inputs.

    python -I probe.py --out OUT.json --signatures '{"serving_default": 2, ...}' VERSION_DIR...

Runs under either TensorFlow (this project's, or build/venv-tf-<version>/'s, which holds nothing
else), so it is run by file path and imports only the standard library, numpy and tensorflow:
never the project's packages, not even ct_local.paths (it checks that it pulled none in).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"  # the venvs live here; modules loaded from it are not the project's
SEED = 20260101


def _seeded_array(np, dtype, shape: tuple[int, ...], seed_key: str):
    """Deterministic input of `shape`: the same bytes under any numpy, from Python's own RNG."""
    count = math.prod(shape)
    digest = hashlib.sha256(f"{SEED}:{seed_key}".encode()).digest()
    raw = random.Random(int.from_bytes(digest[:8], "big")).randbytes(count)
    values = np.frombuffer(raw, np.uint8).reshape(shape)
    if dtype.is_floating:
        return values.astype(dtype.as_numpy_dtype) / 255.0
    return values.copy()


def _inputs(tf, np, signature, name: str, batch: int) -> dict:
    specs = signature.structured_input_signature[1]
    inputs = {}
    for key, spec in sorted(specs.items()):
        dims = list(spec.shape)[1:]
        if any(d is None for d in dims):
            raise ValueError(f"{name}: input {key} has unknown dimensions {spec.shape}")
        shape = (batch, *dims)
        if spec.dtype == tf.uint8 or spec.dtype.is_floating:
            array = _seeded_array(np, spec.dtype, shape, f"{key}:{shape}")
        else:  # integer/bool/string inputs carry no meaning in the contract: zeros
            array = np.zeros(shape, spec.dtype.as_numpy_dtype)
        inputs[key] = tf.constant(array, spec.dtype)
    return inputs


def _jsonable(np, array):
    if array.dtype.kind in "SO":
        return np.vectorize(lambda b: b.decode("utf-8", "backslashreplace"), otypes=[object])(
            array
        ).tolist()
    if array.dtype.kind == "f":
        return array.astype(np.float64).tolist()
    return array.tolist()


def _run_signature(tf, np, signature, where: str, batch: int) -> dict:
    """One signature's inputs (described) and outputs (with values), or the error it raised."""
    entry: dict = {}
    try:
        inputs = _inputs(tf, np, signature, where, batch)
        entry["inputs"] = {
            k: {
                "shape": list(v.shape),
                "dtype": v.dtype.name,
                "sha256": hashlib.sha256(v.numpy().tobytes()).hexdigest(),
            }
            for k, v in inputs.items()
        }
        outputs = signature(**inputs)
    except Exception as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"
        return entry
    entry["outputs"] = {
        k: {"dtype": v.dtype.name, "shape": list(v.shape), "values": _jsonable(np, v.numpy())}
        for k, v in sorted(outputs.items())
    }
    return entry


def _project_modules() -> list[str]:
    """Modules loaded from the repository other than this file, the venvs and the interpreter's."""
    me = Path(__file__).resolve()
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if (f := getattr(module, "__file__", None))
        and Path(f).resolve().is_relative_to(REPO)
        and Path(f).resolve() != me
        and not Path(f).resolve().is_relative_to(BUILD)
        and not Path(f).resolve().is_relative_to(Path(sys.prefix).resolve())
    )


def probe(version_dirs: list[Path], signatures: dict[str, int]) -> dict:
    """Load each version directory and run each named signature present; `signatures` maps a
    signature name to the batch size of its inputs."""
    import numpy as np
    import tensorflow as tf

    tf.random.set_seed(SEED)
    result = {"tf_version": tf.__version__, "sys_prefix": sys.prefix, "models": {}}
    for version_dir in version_dirs:
        key = f"{version_dir.parent.name}/{version_dir.name}"
        entry = result["models"][key] = {}
        try:
            loaded = tf.saved_model.load(str(version_dir))
        except Exception as exc:  # the point of the check: report, do not stop
            entry["load_error"] = f"{type(exc).__name__}: {exc}"
            continue
        entry["signatures_present"] = sorted(loaded.signatures.keys())
        entry["signatures"] = {
            name: _run_signature(tf, np, loaded.signatures[name], f"{key} {name}", batch)
            for name, batch in signatures.items()
            if name in loaded.signatures
        }
    # The probe must not have pulled the project in (it runs where only TensorFlow is installed).
    result["project_modules"] = _project_modules()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where the JSON result goes")
    parser.add_argument("--signatures", required=True, help="JSON: signature name -> batch size")
    parser.add_argument("paths", nargs="*", type=Path, help="model version directories")
    args = parser.parse_args(argv)
    result = probe(args.paths, json.loads(args.signatures))
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
