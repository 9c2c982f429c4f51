"""Per-task training facts: where the data lives, how scans are grouped, the input size.

Labels are not listed here: they are the class folder names found in the data (sorted), and the
exported model carries them, so the gateway never needs a second list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gateway.model_contract import TASKS

_STROKE_SCAN = re.compile(r"^(\d+)\s*\(\d+\)")


def stroke_scan_id(path: Path) -> str | None:
    """'<scan> (<slice>).jpg' -> 'scan-<scan>'; all slices of one scan share it."""
    match = _STROKE_SCAN.match(path.name)
    return f"scan-{match.group(1)}" if match else None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    dataset_dir: str  # folder name under the datasets root
    positive_label: str | None  # two-class tasks: the class whose miss costs most
    size: int
    channels: int = 1
    scan_id: object = None  # callable(Path) -> str | None, where file names carry a scan id
    epochs: int = 30
    val_fraction: float = 0.2

    @property
    def grouped_by_scan(self) -> bool:
        return self.scan_id is not None


TASK_SPECS = {
    spec.name: spec
    for spec in (
        TaskSpec("brain-stroke", "brain-stroke-ct", "Stroke", size=128, scan_id=stroke_scan_id),
        TaskSpec("brain-tumor", "brain-tumor-ct-mri", None, size=128),
        TaskSpec("spine-fracture", "spine-fracture-ct", "fracture", size=128),
    )
}
assert tuple(TASK_SPECS) == TASKS, "training/tasks.py and gateway/model_contract.py disagree"


def get_task(name: str) -> TaskSpec:
    try:
        return TASK_SPECS[name]
    except KeyError:
        raise SystemExit(f"unknown task {name!r}; known: {', '.join(TASK_SPECS)}") from None
