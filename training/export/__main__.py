"""`python -m training.export`: an untrained tiny model as a served version (tests, demos)."""

from training.export.savedmodel import main

main()
