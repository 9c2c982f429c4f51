"""Prove the committed SavedModels load and answer the same in TF Serving's TensorFlow version.

    python scripts/tf_compat.py                  # the version pinned in model-server/Dockerfile
    python scripts/tf_compat.py --version 2.19.0 # try another one
    python scripts/tf_compat.py --report build/tf-compat.json

The one pin is the `FROM tensorflow/serving:<version>` line of model-server/Dockerfile. The script
builds (or reuses) a virtualenv build/venv-tf-<version>/ holding `tensorflow-cpu==<version>` and
its dependencies only, then runs the same probe under that TensorFlow and under this interpreter's
(the one the models are exported with): every committed version directory
model-server/models/<task>/<digits>/ is loaded with tf.saved_model.load and each contract
signature (ct_contract/signatures.py: serving_default, model_info, explain when present) is run on
fixed inputs (seeded uint8 images of the signature's shape, batch 2; model_info a [1] int32
batch). The outputs are compared: same versions, signatures and output keys, same dtypes and
shapes, strings equal, integers equal, floats within the tolerances below. A table per model
version shows the largest absolute difference of every output.

Exit status: 0 every output agrees; 1 something differs (named on stderr); 2 the pin cannot be
read; 3 the pinned TensorFlow cannot be installed or run (PyPI unreachable, no such wheel).

The probe is this file run with `python -I ... --probe`: it imports only the standard library,
numpy and tensorflow, never the project's packages (the contract names come in on the command
line), so it runs in a virtualenv that holds nothing but TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "model-server" / "Dockerfile"
MODELS = REPO / "model-server" / "models"
CONTRACT = REPO / "ct_contract" / "signatures.py"
BUILD = REPO / "build"
VENV_PREFIX = "venv-tf-"
SERVING_IMAGE = "tensorflow/serving"

# Largest absolute difference allowed per output key; other floats get DEFAULT_ATOL, integers and
# strings must be equal.
ATOL = {"probabilities": 1e-5, "heatmap": 1e-4}
DEFAULT_ATOL = 1e-5
IMAGE_BATCH = 2
INFO_BATCH = 1
SEED = 20260101
PIP_TIMEOUT_S = 480  # under the test's 600 s, so a stuck download is reported, not killed
PROBE_TIMEOUT_S = 600

EXIT_MISMATCH, EXIT_PIN, EXIT_ENV = 1, 2, 3
# Variables that would let another environment's packages into a probe.
_LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE")


class PinError(ValueError):
    """The TF Serving version cannot be read from the Dockerfile."""


class EnvError(RuntimeError):
    """The TensorFlow to compare against cannot be installed or run."""


# --- the pin ------------------------------------------------------------------------------------

_VERSION = re.compile(r"^(\d+\.\d+\.\d+)(?:-[A-Za-z0-9.]+)?$")


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions with line continuations joined and comment lines dropped."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [ln.strip() for ln in joined.splitlines() if ln.strip()]


def parse_serving_version(text: str, source: str = "Dockerfile") -> str:
    """The TF Serving version of the `FROM tensorflow/serving:<version>` line of a Dockerfile."""
    found = []
    for line in _instructions(text):
        words = line.split()
        if words[0].upper() != "FROM":
            continue
        reference = next((w for w in words[1:] if not w.startswith("--")), "")
        name, _, _digest = reference.partition("@")
        image, tag = name, None
        if ":" in name.rsplit("/", 1)[-1]:  # a colon before the last "/" is a registry port
            image, tag = name.rsplit(":", 1)
        image = image.lower()
        if image != SERVING_IMAGE and not image.endswith("/" + SERVING_IMAGE):  # or a mirror's
            continue
        version = _VERSION.match(tag or "")
        if not version:
            raise PinError(
                f"{source}: `{line}` pins no TF Serving version (tag {tag!r}); "
                f"write FROM {SERVING_IMAGE}:<major.minor.patch>"
            )
        found.append(version.group(1))
    if not found:
        raise PinError(
            f"{source}: no `FROM {SERVING_IMAGE}:<version>` line, so the TF Serving version "
            "the models must load under is unknown"
        )
    if len(set(found)) > 1:
        raise PinError(f"{source}: several TF Serving versions pinned: {', '.join(found)}")
    return found[0]


def serving_version(dockerfile: Path = DOCKERFILE) -> str:
    """The one pin: the TF Serving version model-server/Dockerfile builds from."""
    try:
        text = dockerfile.read_text()
    except OSError as exc:
        raise PinError(f"cannot read {dockerfile}: {exc}") from exc
    return parse_serving_version(text, str(dockerfile))


# --- the virtualenv -----------------------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV}
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra)
    return env


def venv_dir(version: str) -> Path:
    return BUILD / f"{VENV_PREFIX}{version}"


def _venv_python(target: Path) -> Path:
    return target / "bin" / "python"


def _tf_version_of(python: Path) -> str | None:
    out = subprocess.run(
        [str(python), "-I", "-c", "import tensorflow as tf; print(tf.__version__)"],
        capture_output=True,
        text=True,
        env=_clean_env(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""),
        timeout=PROBE_TIMEOUT_S,
    )
    return out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout else None


def _index_unreachable() -> str | None:
    """Why the package index cannot be reached, or None when it answers at all."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/") + "/pip/"
    try:
        with urllib.request.urlopen(index, timeout=15):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError) as exc:
        return f"{index}: {exc}"


def _build_venv(target: Path, version: str) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".building-{target.name}-", dir=BUILD))
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(staging)], check=True, env=_clean_env(), timeout=300
        )
        requirement = f"tensorflow-cpu=={version}"
        print(f"installing {requirement} into {target.relative_to(REPO)} ...", file=sys.stderr)
        pip = subprocess.run(
            [str(_venv_python(staging)), "-m", "pip", "--disable-pip-version-check", "install"]
            + ["--quiet", requirement],
            capture_output=True,
            text=True,
            env=_clean_env(),
            timeout=PIP_TIMEOUT_S,
        )
        if pip.returncode != 0:
            said = (pip.stdout + pip.stderr).strip()[-3000:]
            unreachable = _index_unreachable()
            if unreachable:
                raise EnvError(
                    f"PyPI is unreachable ({unreachable}), so {requirement} cannot be installed "
                    f"and the models cannot be checked against TF Serving {version}.\n"
                    f"pip said:\n{said}"
                )
            raise EnvError(f"pip install {requirement} failed:\n{said}")
        installed = _tf_version_of(_venv_python(staging))
        if installed != version:
            raise EnvError(f"{requirement} installed, but the venv imports TF {installed!r}")
        staging.rename(target)  # `python -m` and `-c` keep working after a move
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_venv(version: str) -> tuple[Path, float | None]:
    """The Python of build/venv-tf-<version>/ (built when missing) and the seconds a build took
    (None when reused). Parallel runs build it once."""
    BUILD.mkdir(exist_ok=True)
    target = venv_dir(version)
    with open(BUILD / f"{VENV_PREFIX}{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir() and _tf_version_of(_venv_python(target)) == version:
            return _venv_python(target), None
        shutil.rmtree(target, ignore_errors=True)  # half-built or broken: start over
        started = time.monotonic()
        _build_venv(target, version)
        return _venv_python(target), time.monotonic() - started


def dir_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# --- the probe (runs under either TensorFlow; standard library, numpy and tensorflow only) -------


def committed_versions(models: Path = MODELS) -> list[Path]:
    """Every model-server/models/<task>/<digits>/ directory, sorted by task and version."""
    return sorted(
        (v for task in models.iterdir() if task.is_dir() for v in task.iterdir() if v.is_dir()),
        key=lambda v: (v.parent.name, int(v.name) if v.name.isdigit() else -1),
    )


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
        entry["signatures"] = {}
        for name, batch in signatures.items():
            if name not in loaded.signatures:
                continue
            signature = loaded.signatures[name]
            out_entry = entry["signatures"][name] = {}
            try:
                inputs = _inputs(tf, np, signature, f"{key} {name}", batch)
                out_entry["inputs"] = {
                    k: {
                        "shape": list(v.shape),
                        "dtype": v.dtype.name,
                        "sha256": hashlib.sha256(v.numpy().tobytes()).hexdigest(),
                    }
                    for k, v in inputs.items()
                }
                outputs = signature(**inputs)
            except Exception as exc:
                out_entry["error"] = f"{type(exc).__name__}: {exc}"
                continue
            out_entry["outputs"] = {
                k: {
                    "dtype": v.dtype.name,
                    "shape": list(v.shape),
                    "values": _jsonable(np, v.numpy()),
                }
                for k, v in sorted(outputs.items())
            }
    # The probe must not have pulled the project in (it runs where only TensorFlow is installed).
    me = Path(__file__).resolve()
    result["project_modules"] = sorted(
        name
        for name, module in list(sys.modules.items())
        if (f := getattr(module, "__file__", None))
        and Path(f).resolve().is_relative_to(REPO)
        and Path(f).resolve() != me
        and not Path(f).resolve().is_relative_to(BUILD)
        and not Path(f).resolve().is_relative_to(Path(sys.prefix).resolve())
    )
    return result


def _contract_signatures() -> dict[str, int]:
    """Contract signature name -> input batch size, read from ct_contract/signatures.py (a module
    of constants, loaded by path so nothing else of the gateway is imported)."""
    spec = importlib.util.spec_from_file_location("_ct_model_contract", CONTRACT)
    contract = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(contract)
    return {
        contract.PREDICT_SIGNATURE: IMAGE_BATCH,
        contract.INFO_SIGNATURE: INFO_BATCH,
        contract.EXPLAIN_SIGNATURE: IMAGE_BATCH,
    }


def run_probe(python: Path, version_dirs: list[Path], signatures: dict[str, int], label: str):
    """Run this file's probe under `python` (isolated mode); returns (result, seconds)."""
    with tempfile.TemporaryDirectory(prefix="tf-compat-") as tmp:
        out = Path(tmp) / "probe.json"
        cmd = [str(python), "-I", str(Path(__file__).resolve()), "--probe", str(out)]
        cmd += ["--signatures", json.dumps(signatures)]
        cmd += [str(v) for v in version_dirs]
        started = time.monotonic()
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=tmp,
            env=_clean_env(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""),
            timeout=PROBE_TIMEOUT_S,
        )
        seconds = time.monotonic() - started
        if done.returncode != 0 or not out.is_file():
            raise EnvError(
                f"the probe under {label} ({python}) failed with status {done.returncode}:\n"
                f"{(done.stdout + done.stderr).strip()[-4000:]}"
            )
        return json.loads(out.read_text()), seconds


# --- the comparison -----------------------------------------------------------------------------


def _max_abs_diff(a, b) -> float:
    if isinstance(a, list):
        return max((_max_abs_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(a, float) or isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return 0.0
        return abs(a - b) if math.isfinite(a) and math.isfinite(b) else math.inf
    return 0.0 if a == b else math.inf


def compare(reference: dict, candidate: dict) -> tuple[list[dict], list[str]]:
    """Rows (model, signature, output, dtype, shape, max_abs_diff, atol, ok) and the problems."""
    rows, problems = [], []
    ref_models, cand_models = reference["models"], candidate["models"]
    for model in sorted(set(ref_models) | set(cand_models)):
        ref, cand = ref_models.get(model), cand_models.get(model)
        if ref is None or cand is None:
            problems.append(f"{model}: probed under one TensorFlow only")
            continue
        for side, entry in (("reference", ref), ("candidate", cand)):
            if "load_error" in entry:
                problems.append(f"{model}: does not load under the {side}: {entry['load_error']}")
        if "load_error" in ref or "load_error" in cand:
            continue
        if ref["signatures_present"] != cand["signatures_present"]:
            problems.append(
                f"{model}: signatures differ: {ref['signatures_present']} (reference) vs "
                f"{cand['signatures_present']} (candidate)"
            )
        for sig in sorted(set(ref["signatures"]) | set(cand["signatures"])):
            r, c = ref["signatures"].get(sig), cand["signatures"].get(sig)
            where = f"{model} {sig}"
            if r is None or c is None:
                problems.append(f"{where}: run under one TensorFlow only")
                continue
            if "error" in r or "error" in c:
                for side, entry in (("reference", r), ("candidate", c)):
                    if "error" in entry:
                        problems.append(f"{where}: fails under the {side}: {entry['error']}")
                continue
            if r["inputs"] != c["inputs"]:
                problems.append(f"{where}: the two probes fed different inputs")
            for key in sorted(set(r["outputs"]) | set(c["outputs"])):
                ro, co = r["outputs"].get(key), c["outputs"].get(key)
                row = {"model": model, "signature": sig, "output": key, "ok": False}
                rows.append(row)
                if ro is None or co is None:
                    row["note"] = "missing under the " + (
                        "candidate" if co is None else "reference"
                    )
                    problems.append(f"{where} {key}: {row['note']}")
                    continue
                row.update(dtype=ro["dtype"], shape=ro["shape"])
                if (ro["dtype"], ro["shape"]) != (co["dtype"], co["shape"]):
                    row["note"] = f"{co['dtype']}{co['shape']} under the candidate"
                    problems.append(
                        f"{where} {key}: {ro['dtype']}{ro['shape']} (reference) vs "
                        f"{co['dtype']}{co['shape']} (candidate)"
                    )
                    continue
                is_float = ro["dtype"].startswith(("float", "bfloat", "half", "double"))
                atol = ATOL.get(key, DEFAULT_ATOL) if is_float else 0.0
                diff = _max_abs_diff(ro["values"], co["values"])
                row.update(max_abs_diff=diff, atol=atol, ok=diff <= atol)
                if not row["ok"]:
                    problems.append(
                        f"{where} {key}: max abs diff {diff:.3g} > {atol:g}"
                        if is_float and math.isfinite(diff)
                        else f"{where} {key}: values differ"
                    )
    return rows, problems


def format_table(rows: list[dict]) -> str:
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        lines.append(f"\n{model}")
        lines.append(f"  {'signature/output':<32} {'dtype':<8} {'shape':<14} {'max|diff|':>10}  ok")
        for r in (r for r in rows if r["model"] == model):
            diff = r.get("max_abs_diff")
            if diff is None:
                shown = "-"
            elif r["atol"] == 0.0:
                shown = "equal" if diff == 0 else "DIFFER"
            else:
                shown = f"{diff:.2e}"
            name = f"{r['signature']}/{r['output']}"
            shape = "x".join(map(str, r.get("shape", []))) or "-"
            mark = "ok" if r["ok"] else "FAIL " + r.get("note", "")
            lines.append(f"  {name:<32} {r.get('dtype', '-'):<8} {shape:<14} {shown:>10}  {mark}")
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--version",
        help="TensorFlow version to check (default: the TF Serving "
        "version of model-server/Dockerfile's FROM line)",
    )
    parser.add_argument(
        "--keep-venv",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep build/venv-tf-<version>/ for the next run (default: keep)",
    )
    parser.add_argument("--report", type=Path, help="also write the results as JSON here")
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--signatures", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.probe:  # inside either interpreter: stdlib, numpy and tensorflow only
        result = probe(args.paths, json.loads(args.signatures))
        args.probe.write_text(json.dumps(result))
        return 0

    try:
        pinned = serving_version()
    except PinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PIN
    version = args.version or pinned
    source = "--version" if args.version else str(DOCKERFILE.relative_to(REPO))
    version_dirs = [v for v in committed_versions() if v.name.isdigit()]
    if not version_dirs:
        print(f"error: no committed model versions under {MODELS}", file=sys.stderr)
        return EXIT_MISMATCH
    signatures = _contract_signatures()

    report: dict = {"serving_version": pinned, "version": version, "version_source": source}
    target = venv_dir(version)
    try:
        python, build_s = ensure_venv(version)
        report["venv"] = {
            "path": str(target.relative_to(REPO)),
            "built_s": build_s,
            "bytes": dir_size(target),
        }
        reference, ref_s = run_probe(
            Path(sys.executable), version_dirs, signatures, "this interpreter"
        )
        candidate, cand_s = run_probe(python, version_dirs, signatures, f"TF {version}")
    except EnvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ENV
    finally:
        if not args.keep_venv:
            shutil.rmtree(target, ignore_errors=True)

    rows, problems = compare(reference, candidate)
    if candidate["tf_version"] != version:
        problems.append(f"the candidate runs TF {candidate['tf_version']}, not {version}")
    for side, result in (("reference", reference), ("candidate", candidate)):
        if result["project_modules"]:
            problems.append(
                f"the {side} probe imported project modules {result['project_modules']}"
            )
    report.update(
        reference={
            "tf_version": reference["tf_version"],
            "sys_prefix": reference["sys_prefix"],
            "probe_s": ref_s,
        },
        candidate={
            "tf_version": candidate["tf_version"],
            "sys_prefix": candidate["sys_prefix"],
            "probe_s": cand_s,
        },
        models=sorted(reference["models"]),
        rows=rows,
        problems=problems,
        ok=not problems,
    )
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n")

    built = "reused" if build_s is None else f"built in {build_s:.0f} s"
    print(
        f"TF Serving pin: {pinned} ({DOCKERFILE.relative_to(REPO)}); checking TF {version} "
        f"({source})\n"
        f"reference: TF {reference['tf_version']} ({reference['sys_prefix']}), "
        f"probe {ref_s:.1f} s\n"
        f"candidate: TF {candidate['tf_version']} ({target.relative_to(REPO)}, {built}, "
        f"{report['venv']['bytes'] / 2**20:.0f} MiB), probe {cand_s:.1f} s"
    )
    print(format_table(rows))
    if problems:
        print(f"\n{len(problems)} mismatch(es) against TF {version}:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_MISMATCH
    print(f"\nevery committed model version answers the same under TF {version}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
