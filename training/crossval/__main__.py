"""`python -m training.crossval`: the package's command line (training/crossval/__init__.py)."""

from training.crossval import main

main()
