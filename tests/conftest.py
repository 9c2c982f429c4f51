"""Fixtures live in tests/fixtures/, one module per component, so each owner edits its own."""

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.model_server",
    "tests.fixtures.gateway",
]
