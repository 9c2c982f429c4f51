"""Prove the committed SavedModels load and answer the same in TF Serving's TensorFlow version:
`python -m ct_local.tf_compat` under its documented name (`make tf-compat`, docs/tf-compat.md).

    python scripts/tf_compat.py                  # the version pinned in model-server/Dockerfile
    python scripts/tf_compat.py --version 2.19.0 # try another one
    python scripts/tf_compat.py --report build/tf-compat.json
"""

import contextlib

from ct_local.tf_compat.__main__ import main

if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())
