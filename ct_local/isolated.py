"""Running Python in a venv of its own, with nothing from this environment leaking in.

The gateway-image check (tests/gateway/test_isolated_env.py) and the TF Serving
compatibility check (ct_local/tf_compat) both build a separate venv and run code in it.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

# Variables that would let another environment's packages into the child.
LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE")


def clean_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """`base` (default: this process's environment) without LEAKY_ENV and the user site, + extra."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in LEAKY_ENV}
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra)
    return env


def index_unreachable() -> str | None:
    """Why the package index cannot be reached, or None when it answers at all."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/") + "/pip/"
    try:
        with urllib.request.urlopen(index, timeout=15):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError) as exc:
        return f"{index}: {exc}"
