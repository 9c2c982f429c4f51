"""Fixtures live in tests/fixtures/, one module per component, so each owner edits its own.

Hypothesis profiles: `fast` (the edit loop, `make test-fast` passes --hypothesis-profile=fast) runs
few examples per property; CT_HYPOTHESIS_PROFILE=fast selects it without the option.
"""

import os

from hypothesis import settings

settings.register_profile("fast", max_examples=10, deadline=None)
if os.environ.get("CT_HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["CT_HYPOTHESIS_PROFILE"])

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.standin",
    "tests.fixtures.gateway",
]
