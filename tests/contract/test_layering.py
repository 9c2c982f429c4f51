"""The package layering holds: who may import whom, no import cycles, no path patching.

The layers, from the bottom: `ct_contract` (the serving contract) imports no other package of ours;
`gateway` and `training` and `ct_standin` import the contract and never each other; `ct_local`
(launchers, the smoke, the benchmarks' library) may use all of them; `tests` is imported by nobody
outside `tests`. Every import statement counts, function-level ones included: an import inside a
function is still a dependency, and a cycle hidden that way is still a cycle.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.common import REPO

PACKAGES = {
    "ct_contract": REPO / "ct_contract",
    "ct_dicom_node": REPO / "dicom-node" / "ct_dicom_node",
    "ct_local": REPO / "ct_local",
    "ct_standin": REPO / "model-server" / "ct_standin",
    "gateway": REPO / "gateway",
    "training": REPO / "training",
}
SCRIPT_DIRS = (REPO / "benchmarks", REPO / "model-server")
# Which first-party packages each package may import (itself always).
ALLOWED = {
    "ct_contract": set(),
    # the DICOM node is a client of the gateway over HTTP: it imports no package of ours
    "ct_dicom_node": set(),
    "gateway": {"ct_contract"},
    "training": {"ct_contract"},
    "ct_standin": {"ct_contract"},
    "ct_local": {"ct_contract", "gateway", "training", "ct_standin"},
}
GENERATED = {"tfs_api_pb2.py"}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the first-party packages."""
    found = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            if path.name in GENERATED or "__pycache__" in path.parts:
                continue
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_names(path: Path, module: str) -> Iterator[str]:
    """Every module name an import statement in `path` names (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def first_party_edges() -> dict[str, set[str]]:
    modules = module_files()
    edges = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(path, module):
            # "from pkg import sub" names pkg.sub (a module) or pkg.attr (not one): keep modules
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        edges[module] = targets
    return edges


def test_packages_import_only_the_layers_below_them():
    wrong = [
        f"{module} imports {target}"
        for module, targets in first_party_edges().items()
        for target in targets
        if (top := target.split(".")[0]) != module.split(".")[0]
        and top not in ALLOWED[module.split(".")[0]]
    ]
    assert not wrong, "\n".join(sorted(wrong))


def _cycle_from(start: str, edges: dict[str, set[str]]) -> list[str] | None:
    stack, on_path = [(start, iter(sorted(edges[start])))], [start]
    while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            on_path.pop()
        elif child == start:
            return [*on_path, start]
        elif child not in on_path and child > start:  # each cycle found from its smallest member
            stack.append((child, iter(sorted(edges[child]))))
            on_path.append(child)
    return None


def test_no_import_cycles():
    """Package __init__ edges are skipped: importing pkg.sub runs pkg/__init__ first, by design."""
    edges = first_party_edges()
    edges = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in edges.items()}
    cycles = [c for m in sorted(edges) if (c := _cycle_from(m, edges))]
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def _code_outside_tests() -> list[Path]:
    files = [p for p in module_files().values()]
    for folder in SCRIPT_DIRS:
        files += [p for p in folder.glob("*.py")]
    return sorted(set(files))


PATH_PATCH = re.compile(r"\bsys\.path\b|[\"']PYTHONPATH[\"']\s*\]?\s*=|\benv\[\"PYTHONPATH\"\]")


@pytest.mark.parametrize("path", _code_outside_tests(), ids=lambda p: str(p.relative_to(REPO)))
def test_code_outside_tests_neither_patches_paths_nor_imports_tests(path):
    text = path.read_text()
    assert not PATH_PATCH.search(text), f"{path}: edits sys.path or PYTHONPATH"
    imports = {n.split(".")[0] for n in imported_names(path, path.stem)}
    assert "tests" not in imports, f"{path}: imports the tests package"


# Inside ct_contract, decoding flows one way: the entry (sniffs once) -> the two readers -> what
# they build on. A module imports only modules of a lower layer: no reader imports the entry (it
# would hand bytes back) or the other reader (it would sniff again).
DECODING_LAYERS = (
    {"ct_contract.preprocess"},
    {"ct_contract.pictures", "ct_contract.dicom"},
    {"ct_contract.dicom_dataset", "ct_contract.dicom_values"},
    {"ct_contract.slices"},
)


def test_decoding_modules_import_only_lower_layers():
    layer = {module: depth for depth, group in enumerate(DECODING_LAYERS) for module in group}
    edges = first_party_edges()
    assert set(layer) <= set(edges), "a decoding module was renamed: update DECODING_LAYERS"
    wrong = [
        f"{module} imports {target}"
        for module in layer
        for target in edges[module]
        if target.startswith("ct_contract.") and layer.get(target, -1) <= layer[module]
    ]
    assert not wrong, "\n".join(sorted(wrong))


# Inside gateway, the request path (server -> app -> intake -> service -> decoding -> series ->
# answers) sits on the sub-packages, never the other way: each imports only the gateway modules
# named here (and its own modules). server.py is handed the app; it never imports it.
GATEWAY_ROOMS = {
    "gateway.observability": {"gateway.config"},
    "gateway.fetch": {"gateway.errors", "gateway.observability"},
    "gateway.tfs": {"gateway.errors", "gateway.config", "gateway.observability"},
    "gateway.models": {"gateway.errors", "gateway.tfs"},
    "gateway.web": set(),
    "gateway.server": {"gateway.errors", "gateway.observability"},
}


def test_gateway_sub_packages_sit_below_the_request_path():
    edges = first_party_edges()
    inside = lambda name, prefix: name == prefix or name.startswith(prefix + ".")  # noqa: E731
    wrong = [
        f"{module} imports {target}"
        for room, allowed in GATEWAY_ROOMS.items()
        for module, targets in edges.items()
        if inside(module, room)
        for target in targets
        if inside(target, "gateway")
        and target != "gateway"
        and not any(inside(target, ok) for ok in {room, *allowed})
    ]
    assert not wrong, "\n".join(sorted(wrong))
