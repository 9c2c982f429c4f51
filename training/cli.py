"""What training's CLIs share, defined once: where they read and write by default (every CLI's
defaults come from here), the flags (each CLI (train, audit, crossval, compare, ensemble,
reexport) builds its parser on `parent(...)` with the flags it takes, so a flag means the same and
has the same default everywhere), and the one exception training's library code raises for a
refused input or run, TrainingError, which `exits_on_error` turns into an exit message, in a
CLI's `main` only."""

from __future__ import annotations

import argparse
import functools
import shlex
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "datasets"
MODELS_ROOT = REPO / "model-server" / "models"
REPORTS_ROOT = REPO / "training" / "reports"
CHECKPOINTS = REPO / "build" / "checkpoints"
CACHE_DIR = REPO / "build" / "cache"
KFOLD_OUT = REPO / "build" / "crossval"


class TrainingError(Exception):
    """A run that cannot go on: unknown task or architecture, missing data, mismatched members."""


def dataset_folder(task, data: Path | None = None) -> Path:
    """`data`, or the task's folder (TaskSpec.dataset_dir) under the shared datasets root."""
    return data or DEFAULT_DATA_ROOT / task.dataset_dir


FLAGS: dict[str, dict] = {
    "--task": {"required": True, "help": "a task of training/tasks.py"},
    "--data": {"type": Path, "help": "dataset folder (default: ../shared/datasets/<task dir>)"},
    "--seed": {"type": int, "default": 1337, "help": "the split's seed (and training's)"},
    "--arch": {"default": "plain_cnn", "help": "a training/nets/architectures.py architecture"},
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
