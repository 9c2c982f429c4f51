"""`make run`: the local model server and the gateway in the foreground; Ctrl-C stops both.

A thin wrapper: the launcher is ct_local.run (installed with `make venv`).
"""

import sys

from ct_local.run import main

if __name__ == "__main__":
    sys.exit(main())
