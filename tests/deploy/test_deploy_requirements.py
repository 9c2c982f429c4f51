"""The gateway image installs a hashed lock that is exactly requirements.txt plus its dependencies.

gateway/requirements.in (direct dependencies) is the input of pip-compile --generate-hashes;
gateway/requirements.lock is its output, which gateway/Dockerfile installs with --require-hashes
--no-deps. gateway/requirements.txt stays unhashed for the dev environment (requirements-dev.txt
includes it, and pip refuses a mix of hashed and unhashed requirements), so the three must agree.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.fixtures.common import REPO

GATEWAY = REPO / "gateway"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("--hash"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        found[canonicalize_name(match[1])] = match[2]
    return found


def lock_entries() -> dict[str, tuple[str, list[str]]]:
    text = (GATEWAY / "requirements.lock").read_text()
    entries = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        block = "\n".join(ln for ln in block.splitlines() if not ln.lstrip().startswith("#"))
        if not block.strip():
            continue
        match = PIN.match(block)
        assert match, f"requirements.lock: unexpected entry {block[:80]!r}"
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
        entries[canonicalize_name(match[1])] = (match[2], hashes)
    return entries


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


def imported_top_level_modules() -> set[str]:
    modules = set()
    for path in [*GATEWAY.glob("*.py"), *(REPO / "ct_contract").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"gateway", "ct_contract", "__future__"}


def test_requirements_in_and_txt_pin_the_same_direct_dependencies():
    assert pins(GATEWAY / "requirements.in") == pins(GATEWAY / "requirements.txt")


def test_every_locked_package_is_pinned_with_hashes():
    entries = lock_entries()
    text = (GATEWAY / "requirements.lock").read_text()
    assert not re.search(r"^\s*(-e|--index-url|--extra-index-url|--find-links|-f)\b", text, re.M)
    for name, (version, hashes) in entries.items():
        assert hashes, f"{name}=={version} has no --hash"


def test_lock_is_the_direct_pins_plus_their_dependencies():
    direct = pins(GATEWAY / "requirements.txt")
    locked = {name: version for name, (version, _) in lock_entries().items()}
    for name, version in direct.items():
        assert locked.get(name) == version, f"{name}: lock {locked.get(name)} != txt {version}"
    # The dev environment installs requirements.txt, so its metadata has the same closure.
    closure = dependency_closure(set(direct))
    assert set(locked) == closure, (
        f"missing from the lock: {sorted(closure - set(locked))}; "
        f"not needed: {sorted(set(locked) - closure)} (re-run pip-compile, requirements.in)"
    )


def test_every_package_the_gateway_imports_is_a_direct_dependency():
    direct = set(pins(GATEWAY / "requirements.txt"))
    owners = metadata.packages_distributions()
    for module in imported_top_level_modules():
        dists = {canonicalize_name(d) for d in owners.get(module, [])}
        assert dists, f"gateway imports {module!r}, which no installed distribution provides"
        assert dists & direct, f"gateway imports {module!r} ({sorted(dists)}): declare it"
