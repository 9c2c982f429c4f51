"""pyproject.toml lists every package, and a real (non-editable) wheel carries each of them.

An editable install finds subpackages on disk whether they are listed or not; a wheel (what an
image or another machine installs) holds only what pyproject.toml lists.
"""

from __future__ import annotations

import subprocess
import zipfile

import pytest

from tests.deploy.repository import FIRST_PARTY, SETUPTOOLS, package_dir
from tests.fixtures.common import PYTHON, REPO


def packages_on_disk() -> set[str]:
    found = set()
    for top in FIRST_PARTY:
        root = package_dir(top)
        for init in root.rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                found.add(".".join([top, *init.parent.relative_to(root).parts]))
    return found


def test_every_package_on_disk_is_listed():
    listed = set(SETUPTOOLS["packages"])
    assert packages_on_disk() <= listed, sorted(packages_on_disk() - listed)
    for name in listed:
        assert package_dir(name).is_dir(), name


@pytest.mark.slow
def test_a_built_wheel_holds_every_module(tmp_path):
    subprocess.run(
        [
            PYTHON,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("ct_triage-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in packages_on_disk():
        root = package_dir(package)
        for module in root.glob("*.py"):
            assert f"{package.replace('.', '/')}/{module.name}" in names, (package, module.name)
    assert "gateway/web/static/index.html" in names
    assert "gateway/tfs/protos/tfs_api.proto" in names
