"""Every repository path README.md and docs/*.md name exists, and none names a file outside it.

Checked: words in `backticks` and in fenced code blocks that start with one of the repository's
top-level folders or name a top-level file (a glob must match something), relative Markdown link
targets, Markdown file names (`*.md`: some file of the repository has that name) and the modules
of `python -m` lines. Placeholders (`<task>`, `{a,b}`, `$VAR`) and generated folders (build/,
runs/) are skipped.

Outside the repository only `../shared/datasets/` may be named: it is the training and benchmark
commands' default data folder (`training/cli.py`, `ct_local/paths.py`; `--data`, `DATA=` or
`CT_SHARED_DIR` pick another), a convention a clone can follow, not a document. The samples are
committed in `docs/samples/`, so nothing names `../shared/samples`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.repository import GENERATED, INLINE_CODE, file_names, package_dir
from tests.fixtures.common import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
OUTSIDE_ALLOWED = ("../shared/datasets/",)
TOP_LEVEL_FILE = re.compile(r"^(Makefile|pyproject\.toml|requirements[\w-]*\.(txt|in|lock))$")
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
FENCED_SPLIT = re.compile(r"[\s\"'=@(),;|]+")
PLACEHOLDER = re.compile(r"[<>{}$\[\]*?]")
MARKDOWN_NAME = re.compile(r"(?<![\w./-])([\w.-]+\.md)\b")
MODULE_RUN = re.compile(r"python -m ([\w.]+)")
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def top_level() -> set[str]:
    return {p.name for p in REPO.iterdir() if not p.name.startswith(".")} | {".github", ".ci"}


def words(text: str) -> list[str]:
    """Words of inline code (split on blanks) and of fenced blocks (split on shell punctuation)."""
    inline = [w for code in INLINE_CODE.findall(text) for w in code.split()]
    fenced = [w for block in FENCED.findall(text) for w in FENCED_SPLIT.split(block)]
    return [w.split("::")[0].rstrip(".,;:)`") for w in inline + fenced if w]


def named_paths(text: str) -> set[str]:
    roots = top_level() - GENERATED
    found = set()
    for word in words(text):
        if re.search(r"[<>{}$\[\]]", word) or "://" in word:
            continue
        first = word.split("/")[0]
        if ("/" in word and first in roots) or TOP_LEVEL_FILE.match(word):
            found.add(word)
    return found


def outside_paths(text: str) -> set[str]:
    """Words that climb out of the repository, but for the data folder's convention."""
    return {
        w
        for w in words(text)
        if w.startswith(("../", "/work/")) and not w.startswith(OUTSIDE_ALLOWED)
    }


def relative_links(text: str) -> list[str]:
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z]+:", t)]


def links_outside(folder: Path, text: str) -> list[str]:
    """Relative links from a document in `folder` that resolve outside the repository."""
    root = REPO.resolve()
    return [t for t in relative_links(text) if not (folder / t).resolve().is_relative_to(root)]


def runnable(module: str) -> bool:
    """Whether `python -m module` finds a first-party module (others are not ours to check)."""
    if not (package_dir(module.split(".")[0]) / "__init__.py").exists():
        return True
    path = package_dir(module)
    return path.with_suffix(".py").exists() or (path / "__main__.py").exists()


def exists(path: str) -> bool:
    return any(REPO.glob(path)) if "*" in path else (REPO / path).exists()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_in_backticks_and_code_blocks_exists(doc: Path) -> None:
    missing = sorted(p for p in named_paths(doc.read_text()) if not exists(p))
    assert not missing, f"{doc.relative_to(REPO)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_exists_in_the_repository(doc: Path) -> None:
    text = doc.read_text()
    missing = sorted(t for t in relative_links(text) if not (doc.parent / t).exists())
    assert not missing, f"{doc.relative_to(REPO)} links to missing files: {missing}"
    outside = links_outside(doc.parent, text)
    assert not outside, f"{doc.relative_to(REPO)} links outside the repository: {outside}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_path_outside_the_repository(doc: Path) -> None:
    outside = sorted(outside_paths(doc.read_text()))
    assert not outside, f"{doc.relative_to(REPO)} names paths outside the repository: {outside}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_markdown_file_named_is_in_the_repository(doc: Path) -> None:
    names = {n for n in MARKDOWN_NAME.findall(doc.read_text()) if not PLACEHOLDER.search(n)}
    missing = sorted(names - file_names())
    assert not missing, f"{doc.relative_to(REPO)} names documents not in the repository: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_python_dash_m_module_exists(doc: Path) -> None:
    missing = sorted(m for m in MODULE_RUN.findall(doc.read_text()) if not runnable(m))
    assert not missing, f"{doc.relative_to(REPO)} runs modules that do not exist: {missing}"


def test_the_checks_catch_what_they_are_for() -> None:
    text = (
        "See `DESIGN.md`, `gateway/no_such_module.py` and [x](../../elsewhere.md).\n"
        "```bash\ncurl -F image=@../shared/samples/x.jpg localhost:9696\n"
        "python -m x --data ../shared/datasets/brain-stroke-ct\n```\n"
    )
    assert "DESIGN.md" in set(MARKDOWN_NAME.findall(text)) - file_names()
    assert "gateway/no_such_module.py" in named_paths(text)
    assert outside_paths(text) == {"../shared/samples/x.jpg"}
    assert links_outside(REPO / "docs", text) == ["../../elsewhere.md"]
    assert links_outside(REPO / "docs", "[readme](../README.md)") == []
    assert not runnable("training.no_such_command") and not runnable("gateway.nothing")
    assert runnable("gateway") and runnable("zipfile")
