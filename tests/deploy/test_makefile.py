"""The Makefile's test targets agree with the test tree, the markers and the hypothesis profiles."""

from __future__ import annotations

import re
import tomllib

from hypothesis import settings

from tests.fixtures.common import REPO

MAKEFILE = REPO / "Makefile"


def make_var(name: str) -> str:
    match = re.search(rf"^{name}\s*:=\s*(.+)$", MAKEFILE.read_text(), re.M)
    assert match, f"{name} is not defined in the Makefile"
    return match.group(1).strip()


def test_every_test_lane_has_a_make_target():
    lanes = {
        p.name
        for p in (REPO / "tests").iterdir()
        if p.is_dir() and (p / "__init__.py").is_file() and p.name != "fixtures"
    }
    assert set(make_var("LANES").split()) == lanes


def test_test_fast_deselects_declared_markers_and_uses_a_registered_profile():
    fast = make_var("FAST")
    markers = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]
    declared = {m.split(":")[0] for m in markers["ini_options"]["markers"]}
    assert re.findall(r"not (\w+)", fast) == ["slow", "integration"]
    assert {"slow", "integration"} <= declared
    (profile,) = re.findall(r"--hypothesis-profile=(\w+)", fast)
    assert settings.get_profile(profile).max_examples < settings.get_profile("default").max_examples
