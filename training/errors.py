"""The one exception training's library code raises for a refused input or run; only a CLI's
`main` turns it into an exit message (training/cli.py `exits_on_error`)."""

from __future__ import annotations


class TrainingError(Exception):
    """A run that cannot go on: unknown task or architecture, missing data, mismatched members."""
