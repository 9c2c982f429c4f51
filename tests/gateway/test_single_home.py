"""Each fact of the gateway's request path has one home: the size caps, the check that a model is
served, the entry into decoding; and the top of gateway/ stays small enough to read as that path.

Read from the source with `ast`: a second home fails here even before it behaves differently.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path

from tests.fixtures.common import REPO

GATEWAY = REPO / "gateway"
MAX_TOP_LEVEL_MODULES = 15
CAP_SETTINGS = {"max_request_bytes", "max_series_bytes", "max_series_slices"}
# (file, function) where each cap setting may be read. gateway/fetch/ keeps a default of its own
# for a caller that names no limit (intake always names one).
CAP_OWNERS = {("intake.py", "caps_for"), ("fetch/transport.py", "fetch_image")}
# ct_contract's decoders: the entry and the readers behind it.
DECODING_MODULES = {"ct_contract.preprocess", "ct_contract.pictures"} | {
    f"ct_contract.{p.stem}" for p in (REPO / "ct_contract").glob("dicom*.py")
}


def gateway_files() -> list[Path]:
    return sorted(
        p
        for p in GATEWAY.rglob("*.py")
        if "__pycache__" not in p.parts and not p.name.endswith("_pb2.py")
    )


def name_of(path: Path) -> str:
    return path.relative_to(GATEWAY).as_posix()


def nodes_with_function(path: Path) -> Iterator[tuple[ast.AST, str]]:
    """Every node of `path` with the name of the innermost function around it ("" at top level)."""

    def walk(node: ast.AST, function: str) -> Iterator[tuple[ast.AST, str]]:
        for child in ast.iter_child_nodes(node):
            yield child, function
            inner = child.name if isinstance(child, ast.FunctionDef) else function
            yield from walk(child, inner)

    yield from walk(ast.parse(path.read_text(), str(path)), "")


def imports_from(path: Path) -> Iterator[tuple[str, str]]:
    """(module, name) for every `from module import name` and `import module` in `path`."""
    for node, _ in nodes_with_function(path):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield from ((node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from ((alias.name, "") for alias in node.names)


def test_the_top_of_gateway_is_at_most_15_modules():
    modules = sorted(p.name for p in GATEWAY.glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules


def test_every_sub_package_says_what_it_holds():
    for package in sorted(p.parent for p in GATEWAY.glob("*/__init__.py")):
        tree = ast.parse((package / "__init__.py").read_text())
        assert ast.get_docstring(tree), f"gateway/{package.name}/__init__.py has no docstring"


def test_each_size_cap_is_read_in_one_place():
    readers = {
        (name_of(path), function, node.attr)
        for path in gateway_files()
        for node, function in nodes_with_function(path)
        if isinstance(node, ast.Attribute) and node.attr in CAP_SETTINGS
    }
    stray = {r for r in readers if r[:2] not in CAP_OWNERS}
    assert not stray, f"size caps read outside {sorted(CAP_OWNERS)}: {sorted(stray)}"
    owner = {
        attr for file, function, attr in readers if (file, function) == ("intake.py", "caps_for")
    }
    assert owner == CAP_SETTINGS


def test_the_served_model_check_is_called_from_one_place():
    calls = [
        f"{name_of(path)}:{node.lineno}"
        for path in gateway_files()
        for node, _ in nodes_with_function(path)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "check_task"
    ]
    assert len(calls) == 1, calls


def test_only_gateway_decoding_imports_the_decoders():
    importers = set()
    for path in gateway_files():
        for module, name in imports_from(path):
            if module in DECODING_MODULES and name:
                value = getattr(importlib.import_module(module), name, None)
                if inspect.isfunction(value):
                    importers.add(name_of(path))
            elif module in DECODING_MODULES:  # `import ct_contract.preprocess`: all of it
                importers.add(name_of(path))
    assert importers == {"decoding.py"}


def test_decoding_is_entered_from_the_service_alone_and_orders_the_series_itself():
    """service -> decoding -> series, one way: the service does not come back to series.py."""
    users = {
        name_of(path)
        for path in gateway_files()
        for module, name in imports_from(path)
        if module == "gateway.decoding" or (module == "gateway" and name == "decoding")
    }
    assert users == {"service.py"}
    service = dict.fromkeys(imports_from(GATEWAY / "service.py"))
    assert ("gateway", "series") not in service and all(m != "gateway.series" for m, _ in service)
