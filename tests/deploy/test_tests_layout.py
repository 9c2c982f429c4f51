"""The test tree keeps its own rules: file names do not repeat their lane, and the shared test
inputs (pydicom's sample files, the tumour fake model) are built in one place, tests/fixtures/."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.fixtures.common import REPO

TESTS = REPO / "tests"
LANES = sorted(p.name for p in TESTS.iterdir() if p.is_dir() and (p / "__init__.py").exists())
# name -> the one module of tests/ that may call or define it
ONE_HOME = {
    "get_testdata_file": TESTS / "fixtures" / "dicom_files.py",
    "tumour_model": TESTS / "fixtures" / "gateway.py",
}


def _test_files() -> list[Path]:
    return sorted(TESTS.rglob("*.py"))


def test_lanes_exist() -> None:
    assert {"gateway", "contract", "training", "standin", "deploy", "integration"} <= set(LANES)


def test_no_test_file_repeats_its_lane() -> None:
    repeated = [
        str(path.relative_to(REPO))
        for lane in LANES
        for path in (TESTS / lane).glob("test_*.py")
        if path.stem.startswith(f"test_{lane}_") or path.stem.endswith(f"_{lane}")
    ]
    assert not repeated, f"test files named after their lane: {repeated}"


def _builds(path: Path, name: str) -> bool:
    """`path` defines `name`, imports it from outside tests/ or calls it as an attribute (a source
    of its own, rather than an import from its home)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return True
        foreign = isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("tests.")
        if foreign and any(a.name == name for a in node.names):
            return True
        if isinstance(node, ast.Attribute) and node.attr == name:
            return True
    return False


def test_shared_inputs_have_one_home() -> None:
    for name, home in ONE_HOME.items():
        assert _builds(home, name), f"{home.relative_to(REPO)} no longer holds {name}"
        others = [
            str(p.relative_to(REPO))
            for p in _test_files()
            if p not in (home, Path(__file__)) and _builds(p, name)
        ]
        assert not others, f"{name} built outside {home.relative_to(REPO)}: {others}"


def test_the_check_sees_a_second_source(tmp_path: Path) -> None:
    copy = tmp_path / "test_x.py"
    copy.write_text("from pydicom.data import get_testdata_file\n", encoding="utf-8")
    assert _builds(copy, "get_testdata_file")
    copy.write_text("from tests.fixtures.gateway import tumour_model\n", encoding="utf-8")
    assert not _builds(copy, "tumour_model")
    copy.write_text("import pydicom\nx = pydicom.data.get_testdata_file('a')\n", encoding="utf-8")
    assert _builds(copy, "get_testdata_file")
