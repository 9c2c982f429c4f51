"""The command line of the TF Serving compatibility check (see the package docstring)."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from pathlib import Path

import ct_local.tf_compat
from ct_contract import signatures as contract
from ct_local.paths import MODELS_ROOT, REPO
from ct_local.tf_compat.compare import compare, format_table
from ct_local.tf_compat.pin import DOCKERFILE, PinError, serving_version
from ct_local.tf_compat.tf_venv import EnvError, dir_size, ensure_venv, run_probe, venv_dir

MODELS = MODELS_ROOT
IMAGE_BATCH = 2
INFO_BATCH = 1
EXIT_MISMATCH, EXIT_PIN, EXIT_ENV = 1, 2, 3


def committed_versions(models: Path = MODELS) -> list[Path]:
    """Every model-server/models/<task>/<digits>/ directory, sorted by task and version."""
    return sorted(
        (v for task in models.iterdir() if task.is_dir() for v in task.iterdir() if v.is_dir()),
        key=lambda v: (v.parent.name, int(v.name) if v.name.isdigit() else -1),
    )


def contract_signatures() -> dict[str, int]:
    """Contract signature name -> input batch size. The probe gets these on its command line:
    it imports nothing of the project, this process (the development venv) may."""
    return {
        contract.PREDICT_SIGNATURE: IMAGE_BATCH,
        contract.INFO_SIGNATURE: INFO_BATCH,
        contract.EXPLAIN_SIGNATURE: IMAGE_BATCH,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=ct_local.tf_compat.__doc__.split("\n\n")[0])
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
    return parser.parse_args(argv)


def _problems(version: str, reference: dict, candidate: dict) -> tuple[list[dict], list[str]]:
    rows, problems = compare(reference, candidate)
    if candidate["tf_version"] != version:
        problems.append(f"the candidate runs TF {candidate['tf_version']}, not {version}")
    for side, result in (("reference", reference), ("candidate", candidate)):
        if result["project_modules"]:
            problems.append(
                f"the {side} probe imported project modules {result['project_modules']}"
            )
    return rows, problems


def _side(result: dict, seconds: float) -> dict:
    return {
        "tf_version": result["tf_version"],
        "sys_prefix": result["sys_prefix"],
        "probe_s": seconds,
    }


def _print_summary(report: dict, build_s: float | None) -> None:
    ref, cand = report["reference"], report["candidate"]
    built = "reused" if build_s is None else f"built in {build_s:.0f} s"
    print(
        f"TF Serving pin: {report['serving_version']} ({DOCKERFILE.relative_to(REPO)}); "
        f"checking TF {report['version']} ({report['version_source']})\n"
        f"reference: TF {ref['tf_version']} ({ref['sys_prefix']}), probe {ref['probe_s']:.1f} s\n"
        f"candidate: TF {cand['tf_version']} ({report['venv']['path']}, {built}, "
        f"{report['venv']['bytes'] / 2**20:.0f} MiB), probe {cand['probe_s']:.1f} s"
    )
    print(format_table(report["rows"]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
    signatures = contract_signatures()

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

    rows, problems = _problems(version, reference, candidate)
    report.update(
        reference=_side(reference, ref_s),
        candidate=_side(candidate, cand_s),
        models=sorted(reference["models"]),
        rows=rows,
        problems=problems,
        ok=not problems,
    )
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n")

    _print_summary(report, build_s)
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
