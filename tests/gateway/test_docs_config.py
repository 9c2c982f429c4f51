"""docs/operations.md's configuration table: exactly the variables gateway/config.py reads, its
defaults."""

from __future__ import annotations

import re

import pytest

from gateway import config
from tests.fixtures.common import REPO

DOC = REPO / "docs" / "operations.md"

SECTION = "## Configuration (gateway environment)"
_ROW = re.compile(r"^\| (`CT_[A-Z0-9_]+`(?:, `CT_[A-Z0-9_]+`)*) \| ([^|]*) \|")
_MIB = re.compile(r"^([0-9]+) MiB$")
_NUMBER = re.compile(r"^[0-9][0-9,]*(?:\.[0-9]+)?$")


def doc_table() -> dict[str, str]:
    """Variable -> default text, from the rows of the configuration table."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        names = re.findall(r"CT_[A-Z0-9_]+", match.group(1))
        defaults = (
            [d.strip() for d in match.group(2).split(",")]
            if len(names) > 1
            else [match.group(2).strip()]
        )
        assert len(defaults) == len(names), f"row {line!r}: one default per variable"
        for name, default in zip(names, defaults, strict=True):
            assert name not in rows, f"{DOC.name} lists {name} twice"
            rows[name] = default
    return rows


def parse_default(text: str) -> object:
    """The value a default cell means ("10 MiB", "40,000,000", "false", "unset", ...)."""
    text = text.replace("`", "").strip()
    if text.startswith("(required"):
        return config.REQUIRED
    if text == "first of CT_MODELS":
        return config.FIRST_MODEL
    if text.startswith("unset"):
        return None
    if text in ("true", "false"):
        return text == "true"
    if match := _MIB.match(text):
        return int(match.group(1)) * 1024 * 1024
    if _NUMBER.match(text):
        return float(text.replace(",", ""))
    return text


def test_the_doc_lists_exactly_the_variables_the_gateway_reads() -> None:
    assert set(doc_table()) == set(config.environment())


@pytest.mark.parametrize("name", sorted(config.environment()))
def test_the_documented_default_is_the_settings_default(name: str) -> None:
    documented = parse_default(doc_table()[name])
    default = config.environment()[name]
    if documented is None:  # "unset": no value, the feature is off
        assert default in (None, ""), name
    else:
        assert documented == default, f"{name}: {DOC.name} says {documented!r}, config {default!r}"
