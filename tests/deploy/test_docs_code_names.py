"""The code names docs/benchmarks.md, docs/model-server.md and docs/tf-compat.md give in
`backticks` exist: a dotted `package.module.function` (or `module.function` of a script such as
benchmarks/bench.py) is defined at the top level of that module (or in one of its classes), and a
bare `file.py` is some file of the repository. Paths with folders: tests/deploy/test_docs_paths.py.
Read statically (ast): nothing is imported, so TensorFlow is not needed. And every `ct-triage`
command the Makefile, mk/, the workflows and the docs name is one of ct_local/cli.py's."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

from ct_local.cli import COMMANDS
from tests.deploy.repository import FIRST_PARTY, INLINE_CODE, file_names, package_dir
from tests.fixtures.common import REPO

DOCS = ["docs/benchmarks.md", "docs/model-server.md", "docs/tf-compat.md"]
DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
FILE_SUFFIXES = {"py", "md", "json", "yaml", "yml", "config", "txt", "lock", "in", "proto", "pb"}


@functools.cache
def scripts_by_stem() -> dict[str, Path]:
    """Python files outside the packages, by stem (benchmarks/gateway_bench.py: gateway_bench)."""
    return {p.stem: p for p in (REPO / "benchmarks").glob("*.py")}


def module_file(parts: list[str]) -> Path | None:
    """The file of a dotted module name (a package's __init__.py), or None."""
    if parts[0] in FIRST_PARTY:
        path = package_dir(".".join(parts))
        if path.is_dir():
            return path / "__init__.py"
        return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None
    return scripts_by_stem().get(parts[0]) if len(parts) == 1 else None


def defined_names(tree: ast.AST) -> set[str]:
    """Top-level definitions and imports of a module, with Class.member for its classes."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            names |= {f"{node.name}.{n}" for n in defined_names(node) if "." not in n}
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def resolves(name: str) -> bool:
    """A module, or a name defined in the longest module prefix of `name`."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        path = module_file(parts[:cut])
        if path is None:
            continue
        rest = ".".join(parts[cut:])
        if not rest:
            return True
        if not path.is_file():
            return False
        return rest in defined_names(ast.parse(path.read_text()))
    return False


def code_names(text: str) -> tuple[set[str], set[str]]:
    """(dotted names of our code, bare file names) in the inline code of `text`."""
    dotted, files = set(), set()
    for code in INLINE_CODE.findall(text):
        for word in code.split():
            word = word.rstrip(".,;:)")
            if word.endswith(".py") and "/" not in word:
                files.add(word)
            elif DOTTED.match(word) and word.rsplit(".", 1)[1] not in FILE_SUFFIXES:
                first = word.split(".")[0]
                if first in FIRST_PARTY or first in scripts_by_stem():
                    dotted.add(word)
    return dotted, files


@pytest.mark.parametrize("doc", DOCS)
def test_every_code_name_a_doc_gives_exists(doc):
    dotted, files = code_names((REPO / doc).read_text())
    assert not sorted(n for n in dotted if not resolves(n)), f"{doc}: names nothing defines"
    assert not sorted(files - file_names()), f"{doc}: file names no file has"


def test_the_check_catches_a_moved_function_and_a_missing_file():
    dotted, files = code_names(
        "`ct_local.bench.report.targets` `ct_local.bench.report.nowhere` `gateway_bench.x` "
        "`ct_local.standin.ModelServer.stop` `probe.py` `no_such_file.py` `batching.config`"
    )
    assert dotted == {
        "ct_local.bench.report.targets",
        "ct_local.bench.report.nowhere",
        "gateway_bench.x",
        "ct_local.standin.ModelServer.stop",
    }
    assert [n for n in sorted(dotted) if not resolves(n)] == [
        "ct_local.bench.report.nowhere",
        "gateway_bench.x",
    ]
    assert files == {"probe.py", "no_such_file.py"}


COMMAND = re.compile(r"(?:`|bin/|^\s*)ct-triage ([a-z][a-z-]*)", re.M)
COMMAND_FILES = ["Makefile", "README.md", "mk/*.mk", "docs/*.md", ".github/workflows/*.yml"]


def test_every_ct_triage_command_the_repository_runs_or_documents_exists():
    """Makefile, mk/, workflows and docs call the wrapper scripts' successors by name."""
    named = {
        (path.relative_to(REPO).as_posix(), command)
        for pattern in COMMAND_FILES
        for path in REPO.glob(pattern)
        for command in COMMAND.findall(path.read_text())
    }
    assert {c for _, c in named} >= {"serve", "smoke", "tf-compat"}  # make run, kind-smoke, ...
    assert not sorted((p, c) for p, c in named if c not in COMMANDS)
