"""What the packaging and doc tests read about the repository itself: pyproject.toml's packages and
where each lives (its package-dir), every file name, and the inline code of a Markdown text."""

from __future__ import annotations

import functools
import os
import re
import tomllib
from pathlib import Path

from tests.fixtures.common import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
FIRST_PARTY = frozenset(name.split(".")[0] for name in SETUPTOOLS["packages"])
GENERATED = {"build", "runs"}  # folders make and the training runs write, never documents
INLINE_CODE = re.compile(r"`([^`\n]+)`")


def package_dir(name: str) -> Path:
    """The folder of a dotted package name (ct_standin lives under model-server/)."""
    top, *rest = name.split(".")
    root = REPO / SETUPTOOLS.get("package-dir", {}).get(top, top)
    return root.joinpath(*rest)


@functools.cache
def file_names() -> frozenset[str]:
    """Every file name in the repository (hidden and generated folders left out)."""
    names = set()
    for _folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in GENERATED]
        names.update(files)
    return frozenset(names)
