"""docs/api.md's error table names every error code the gateway raises (read from gateway/'s source:
codes given where an error is raised, and the default code of an error class raised without one)."""

from __future__ import annotations

import ast
import re

from tests.fixtures.common import REPO

SOURCES = sorted((REPO / "gateway").rglob("*.py"))
CODE = re.compile(r"^[a-z]+(_[a-z0-9]+)*$")


def _str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _status(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Constant) and isinstance(node.value, int) and 400 <= node.value < 600
    )


def _name(func: ast.AST) -> str:
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def class_codes(trees: list[ast.AST]) -> dict[str, str]:
    """Error class -> its CODE (`CODE = "x"` or `STATUS, CODE = 400, "x"`)."""
    codes = {}
    for cls in (n for tree in trees for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for stmt in (s for s in cls.body if isinstance(s, ast.Assign)):
            target, value = stmt.targets[0], stmt.value
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
                for t, v in zip(target.elts, value.elts, strict=False):
                    if getattr(t, "id", "") == "CODE":
                        codes[cls.name] = _str(v)
            elif getattr(target, "id", "") == "CODE" and _str(value):
                codes[cls.name] = _str(value)
    return codes


def raised_codes(trees: list[ast.AST]) -> set[str]:
    defaults, found, used_default = class_codes(trees), set(), set()
    for node in (n for tree in trees for n in ast.walk(tree)):
        if isinstance(node, ast.Dict):  # {405: "method_not_allowed"}
            found |= {_str(v) for k, v in zip(node.keys, node.values, strict=True) if _status(k)}
        if not isinstance(node, ast.Call):
            continue
        args, name = node.args, _name(node.func)
        if len(args) >= 2 and _status(args[0]) and _str(args[1]):  # ApiError(422, "code", ...)
            found.add(_str(args[1]))
        elif name.endswith("Error"):
            code = _str(args[1]) if len(args) >= 2 else None
            code = code or next((_str(k.value) for k in node.keywords if k.arg == "code"), None)
            found.add(code) if code else used_default.add(name)
    codes = found | {defaults[n] for n in used_default if n in defaults}
    return {c for c in codes if c and CODE.match(c)}  # not ConfigError's variable names


def test_the_scan_finds_codes_of_each_kind() -> None:
    codes = raised_codes([ast.parse(p.read_text()) for p in SOURCES])
    assert {"out_of_domain", "method_not_allowed", "not_ready", "url_timeout"} <= codes
    assert "unavailable" not in codes  # ServiceUnavailableError is always raised with its code


def test_the_error_table_lists_every_code() -> None:
    codes = raised_codes([ast.parse(p.read_text()) for p in SOURCES])
    doc = (REPO / "docs" / "api.md").read_text()
    table = "\n".join(line for line in doc.splitlines() if re.match(r"\| [1-5]\d\d \|", line))
    missing = sorted(c for c in codes if f"`{c}`" not in table)
    assert not missing, f"docs/api.md's error table lacks {missing}"
