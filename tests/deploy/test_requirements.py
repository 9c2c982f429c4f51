"""Each lock is exactly the closure of its .in files, and every import is declared in its extra.

One .in file per extra holds exact pins of direct dependencies; pyproject.toml's extras read them
and `make lock` compiles them with pip-compile --generate-hashes: gateway/requirements.in alone
into gateway/requirements.lock (the gateway image installs it with --require-hashes --no-deps),
all four into requirements-dev.lock (`make venv`). Closures come from the installed metadata, so
the environment must be the dev lock's (`make venv`).
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.fixtures.common import REPO

GATEWAY_IN = "gateway/requirements.in"
TRAINING_IN = "training/requirements.in"
STANDIN_IN = "model-server/requirements.in"
DICOM_NODE_IN = "dicom-node/requirements.in"
DEV_IN = [GATEWAY_IN, TRAINING_IN, STANDIN_IN, DICOM_NODE_IN, "requirements-dev.in"]
LOCKS = {
    "gateway/requirements.lock": [GATEWAY_IN],
    "dicom-node/requirements.lock": [DICOM_NODE_IN],
    "requirements-dev.lock": DEV_IN,
}
# Code folders -> the .in files of the extra they run under (training imports the contract, so
# the contract's imports are training's too; ct_standin only reads its constant signature names).
DECLARED_IN = {
    ("gateway", "ct_contract"): [GATEWAY_IN],
    ("training", "ct_contract"): [TRAINING_IN],
    ("model-server/ct_standin",): [STANDIN_IN],
    ("dicom-node/ct_dicom_node",): [DICOM_NODE_IN],
    ("tests", "benchmarks", "ct_local"): DEV_IN,
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(*paths: str) -> dict[str, str]:
    """Exact pins of .in files (a package pinned in two files must have one version)."""
    found: dict[str, str] = {}
    for path in paths:
        for line in (REPO / path).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            match = PIN.match(line)
            assert match, f"{path}: not an exact pin: {line!r}"
            name = canonicalize_name(match[1])
            assert found.setdefault(name, match[2]) == match[2], f"{name}: two versions"
    return found


def lock_entries(path: str) -> dict[str, tuple[str, list[str]]]:
    entries = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", (REPO / path).read_text()):
        block = "\n".join(ln for ln in block.splitlines() if not ln.lstrip().startswith("#"))
        if not block.strip():
            continue
        match = PIN.match(block)
        assert match, f"{path}: unexpected entry {block[:80]!r}"
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
        entries[canonicalize_name(match[1])] = (match[2], hashes)
    return entries


def locked(path: str) -> dict[str, str]:
    return {name: version for name, (version, _) in lock_entries(path).items()}


def dependency_closure(roots: set[str]) -> set[str]:
    """Names reachable through Requires-Dist (no extras) in this environment's metadata."""
    env = default_environment() | {"extra": ""}
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for raw in metadata.requires(name) or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(canonicalize_name(req.name))
    return seen


def first_party() -> set[str]:
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name.split(".")[0] for name in packages["packages"]} | {"tests", "__future__"}


def imported_third_party(folders: tuple[str, ...]) -> set[str]:
    modules = set()
    for folder in folders:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - first_party()


def test_pyproject_extras_read_the_in_files_the_locks_are_compiled_from():
    dynamic = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]
    extras = {name: spec["file"] for name, spec in dynamic["optional-dependencies"].items()}
    assert extras == {
        "gateway": [GATEWAY_IN],
        "training": [TRAINING_IN],
        "standin": [STANDIN_IN],
        "dicom-node": [DICOM_NODE_IN],
        "dev": DEV_IN,
    }


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_package_is_pinned_with_hashes(lock):
    text = (REPO / lock).read_text()
    assert not re.search(r"^\s*(-e|--index-url|--extra-index-url|--find-links|-f)\b", text, re.M)
    for name, (version, hashes) in lock_entries(lock).items():
        assert hashes, f"{lock}: {name}=={version} has no --hash"


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_is_compiled_by_make_lock_from_its_inputs(lock):
    header = re.search(r"^#\s+pip-compile (.*)$", (REPO / lock).read_text(), re.M)
    assert header, f"{lock}: no pip-compile command in its header"
    words = header[1].split()
    assert f"--output-file={lock}" in words
    assert sorted(w for w in words if not w.startswith("-")) == sorted(LOCKS[lock])
    for option in ("--generate-hashes", "--allow-unsafe", "--strip-extras"):
        assert option in words, f"{lock}: compiled without {option} (use `make lock`)"


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_is_exactly_the_direct_pins_plus_their_dependencies(lock):
    direct = pins(*LOCKS[lock])
    versions = locked(lock)
    for name, version in direct.items():
        assert versions.get(name) == version, f"{name}: {lock} {versions.get(name)} != {version}"
    closure = dependency_closure(set(direct))
    assert set(versions) == closure, (
        f"missing from {lock}: {sorted(closure - set(versions))}; "
        f"not needed: {sorted(set(versions) - closure)} (run `make lock`)"
    )


def test_this_environment_is_the_dev_lock():
    """What the closures above are computed from (`make venv` installs the dev lock)."""
    for name, version in locked("requirements-dev.lock").items():
        installed = metadata.version(name)
        assert installed == version, f"{name} {installed} installed, {version} locked: make venv"


def test_the_dev_lock_has_the_gateway_images_versions():
    dev = locked("requirements-dev.lock")
    for name, version in locked("gateway/requirements.lock").items():
        assert dev.get(name) == version, f"{name}: the tests would not run the image's version"


@pytest.mark.parametrize("folders", DECLARED_IN, ids=",".join)
def test_every_imported_package_is_declared_in_its_extra(folders):
    declared = set(pins(*DECLARED_IN[folders]))
    owners = metadata.packages_distributions()
    for module in sorted(imported_third_party(folders)):
        dists = {canonicalize_name(d) for d in owners.get(module, [])}
        assert dists, f"{folders} import {module!r}, which no installed distribution provides"
        assert dists & declared, (
            f"{folders} import {module!r} ({sorted(dists)}): pin it in {DECLARED_IN[folders]}"
        )
