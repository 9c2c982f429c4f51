"""The flags training's CLIs share, defined once: each CLI (train, audit, crossval, compare,
ensemble, reexport) builds its parser on `parent(...)` with the flags it takes, so a flag means
the same and has the same default everywhere. Library code raises TrainingError; `exits_on_error`
turns it into an exit message, in a CLI's `main` only."""

from __future__ import annotations

import argparse
import functools
import shlex
from collections.abc import Callable
from pathlib import Path

from training.errors import TrainingError
from training.paths import CHECKPOINTS, MODELS_ROOT, REPORTS_ROOT

FLAGS: dict[str, dict] = {
    "--task": {"required": True, "help": "a task of training/tasks.py"},
    "--data": {"type": Path, "help": "dataset folder (default: ../shared/datasets/<task dir>)"},
    "--seed": {"type": int, "default": 1337, "help": "the split's seed (and training's)"},
    "--arch": {"default": "plain_cnn", "help": "a training/models.py architecture"},
    "--size": {"type": int, "help": "input size in pixels (default: the task's)"},
    "--epochs": {"type": int, "help": "training epochs (default %(default)s; None: the task's)"},
    "--lr": {"type": float, "default": 2e-3, "help": "peak learning rate (cosine decay)"},
    "--init-from": {"type": Path, "help": "a project checkpoint (build/checkpoints)"},
    "--mil": {
        "action": "store_true",
        "help": "multiple-instance loss on scan bags (brain-stroke), training/mil.py",
    },
    "--flip-tta": {"action": "store_true", "help": "average logits with the mirror image"},
    "--max-per-class": {"type": int, "help": "tiny runs: cap images per class and side"},
    "--models-root": {"type": Path, "default": MODELS_ROOT},
    "--reports-root": {"type": Path, "default": REPORTS_ROOT},
    "--checkpoints-dir": {"type": Path, "default": CHECKPOINTS},
}
OUTPUT_FLAGS = ("--models-root", "--reports-root", "--checkpoints-dir")


def parent(*flags: str) -> argparse.ArgumentParser:
    """A parent parser (argparse `parents=`) holding `flags` as FLAGS defines them."""
    parser = argparse.ArgumentParser(add_help=False)
    for flag in flags:
        parser.add_argument(flag, **FLAGS[flag])
    return parser


def recorded_command(module: str, argv: list[str]) -> str:
    """The command line for the model card, without the flags that only choose output folders."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in OUTPUT_FLAGS:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in OUTPUT_FLAGS)):
            kept.append(arg)
    return f"python -m {module} " + " ".join(shlex.quote(a) for a in kept)


def exits_on_error(main: Callable[[list[str] | None], object]):
    """A CLI's `main(argv)`: a TrainingError becomes an exit message and status 1."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None):
        try:
            return main(argv)
        except TrainingError as error:
            raise SystemExit(str(error)) from None

    return wrapper
