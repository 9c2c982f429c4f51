"""Start the local model server with the committed models: `python model-server/run_local.py`.

A thin wrapper: the launcher is ct_local.run_local (installed with `make venv`).
"""

from ct_local.run_local import main

if __name__ == "__main__":
    main()
