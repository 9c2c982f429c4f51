"""The rendered overlays, shared by the deploy tests (each rendered once per module)."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import OVERLAYS, render


@pytest.fixture(scope="module", params=OVERLAYS)
def objects(request) -> list[dict]:
    return render(request.param)


@pytest.fixture(scope="module")
def kind_objects() -> list[dict]:
    return render("overlays/kind")


@pytest.fixture(scope="module")
def production_objects() -> list[dict]:
    return render("overlays/production")
