"""Smoke-test a running gateway end to end: `python -m ct_local.smoke` under its documented name.

    python scripts/smoke.py --base-url http://127.0.0.1:9696
    python scripts/smoke.py --base-url http://127.0.0.1:9696 --kube --namespace ct-triage

The checks live in ct_local/smoke/ (installed by `make venv`); see its docstring.
"""

from ct_local.smoke.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
