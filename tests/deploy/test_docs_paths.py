"""Every repository path README.md and docs/*.md name exists (no stale references after a move).

Checked: words in `backticks` that start with one of the repository's top-level folders or name a
top-level file (a glob must match something), and relative Markdown link targets. Placeholders
(`<task>`, `{a,b}`) and generated folders (build/, runs/) are skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fixtures.common import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
GENERATED = {"build", "runs"}
TOP_LEVEL_FILE = re.compile(r"^(Makefile|pyproject\.toml|requirements[\w-]*\.(txt|in|lock))$")
CODE = re.compile(r"`([^`\n]+)`")
# Stale references in files another change owns, to fix there (then drop the entry).
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def top_level() -> set[str]:
    return {p.name for p in REPO.iterdir() if not p.name.startswith(".")} | {".github", ".ci"}


def named_paths(text: str) -> set[str]:
    roots = top_level() - GENERATED
    found = set()
    for code in CODE.findall(text):
        for word in code.split():
            word = word.split("::")[0].rstrip(".,;:)")
            if re.search(r"[<>{}$\[\]]", word) or "://" in word:
                continue
            first = word.split("/")[0]
            if ("/" in word and first in roots) or TOP_LEVEL_FILE.match(word):
                found.add(word)
    return found


def exists(path: str) -> bool:
    return any(REPO.glob(path)) if "*" in path else (REPO / path).exists()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_in_backticks_exists(doc: Path):
    missing = sorted(p for p in named_paths(doc.read_text()) if not exists(p))
    assert not missing, f"{doc.relative_to(REPO)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_exists(doc: Path):
    links = [t for t in LINK.findall(doc.read_text()) if not re.match(r"^[a-z]+:", t)]
    missing = sorted(t for t in links if not (doc.parent / t).exists())
    assert not missing, f"{doc.relative_to(REPO)} links to missing files: {missing}"
