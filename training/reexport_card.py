"""The model card and report of a re-exported version (training/reexport.py): what the old card's
training command set, and the old report copied under a note."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

from training.errors import TrainingError


def card_command(card: str) -> list[str]:
    match = re.search(r"^- Training command: `(.+)`$", card, re.MULTILINE)
    if not match:
        raise TrainingError("the model card gives no training command")
    return shlex.split(match.group(1))


def training_flags(card: str) -> dict:
    """arch, size and flip_tta as the original training command set them."""
    argv = card_command(card)

    def value(flag: str):
        return argv[argv.index(flag) + 1] if flag in argv else None

    size = value("--size")
    return {
        "arch": value("--arch") or "plain_cnn",
        "size": int(size) if size else None,
        "flip_tta": "--flip-tta" in argv,
    }


def write_report(old_report: Path, new_report: Path, old: int, new: int, note: str, metrics):
    """Copy the old report folder, headed by what the re-export is; metrics.json extended."""
    shutil.copytree(old_report, new_report)
    body = (old_report / "report.md").read_text().split("\n", 1)[1]
    task = new_report.parent.name
    (new_report / "report.md").write_text(
        f"# {task} — model version {new}\n\n{note}\n\n---\n\n"
        f"*The rest is version {old}'s report ([v{old}](../v{old}/report.md)), copied with its "
        f"figures: same weights, same split, same numbers.*\n{body}"
    )
    (new_report / "metrics.json").write_text(json.dumps(metrics, indent=2))


def model_card(old_card: str, task: str, old: int, new: int, extra: list[str]) -> str:
    card = old_card.replace(
        f"# Model card: {task}, version {old}\n", f"# Model card: {task}, version {new}\n"
    )
    card = card.replace(
        f"- Report: training/reports/{task}/v{old}/report.md",
        f"- Report: training/reports/{task}/v{new}/report.md",
    )
    return card + "".join(f"- {line}\n" for line in extra)
