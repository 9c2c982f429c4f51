"""Per-task training facts: where the data lives, how scans are grouped, the input size, and what
an exported model says about itself (CT window, label groups, the validation floor it must reach).

Labels are not listed here: they are the class folder names found in the data (sorted), and the
exported model carries them, so the gateway never needs a second list. These facts reach the
gateway only through the model's info_json (training/export/savedmodel.py writes it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from training.cli import TrainingError

_STROKE_SCAN = re.compile(r"^(\d+)\s*\(\d+\)")


def stroke_scan_id(path: Path) -> str | None:
    """'<scan> (<slice>).jpg' -> 'scan-<scan>'; all slices of one scan share it."""
    match = _STROKE_SCAN.match(path.name)
    return f"scan-{match.group(1)}" if match else None


_SPINE_BASE = re.compile(r"^(CSFDV\d+B\d+ \(\d+\))")


def spine_base(path: Path) -> str | None:
    """'CSFDV1B10 (18) (3).png' -> 'CSFDV1B10 (18)': the slice whose augmented copy this is."""
    match = _SPINE_BASE.match(path.name)
    return match.group(1) if match else None


INTENDED_USE = "triage support for research and engineering demos; not a medical device."


@dataclass(frozen=True)
class Floor:
    """A validation figure (a key of info_json's `validation`) and the least value accepted."""

    figure: str
    minimum: float
    meaning: str


@dataclass(frozen=True)
class Domain:
    """What a task's model is for (info_json "domain", ct_contract/signatures.py INFO_DOMAIN)."""

    modalities: tuple[str, ...]  # DICOM Modality values
    body_parts: tuple[str, ...]  # DICOM BodyPartExamined values
    input: str

    def to_info(self, ood: dict | None) -> dict:
        return {
            "modalities": list(self.modalities),
            "body_parts": list(self.body_parts),
            "input": self.input,
            "ood": ood,
        }


HEAD = ("HEAD", "BRAIN", "SKULL", "HEADNECK")


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
    window: dict | None = None  # info_json "window": the CT window DICOM input is mapped with
    label_groups: dict | None = None  # info_json "label_groups": {finding: [label, ...]}
    positive_finding: str | None = None  # the group whose miss costs most (its sensitivity)
    floor: tuple[Floor, ...] = ()
    domain: Domain | None = None
    # callable(Path) -> str | None: a base name that augmented copies of one image share; the
    # audit makes them one duplicate cluster, so a split never puts copies on both sides
    copy_group: object = None

    @property
    def grouped_by_scan(self) -> bool:
        return self.scan_id is not None


TASK_SPECS = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "brain-stroke",
            "brain-stroke-ct",
            "Stroke",
            size=128,
            scan_id=stroke_scan_id,
            window={"center": 40.0, "width": 80.0, "name": "brain"},
            floor=(Floor("scan_auc", 0.80, "scan-level ROC AUC on held-out scans"),),
            domain=Domain(("CT",), HEAD, "an axial non-contrast head CT slice (brain window)"),
        ),
        TaskSpec(
            "brain-tumor",
            "brain-tumor-ct-mri",
            None,
            size=128,
            # Trained on 8-bit CT and MRI pictures of unknown window: no window to state.
            window=None,
            label_groups={
                "tumour": [
                    "ct_tumor",
                    "mri_glioma",
                    "mri_meningioma",
                    "mri_pituitary",
                    "mri_tumor",
                ],
                "no tumour": ["ct_healthy", "mri_healthy"],
            },
            positive_finding="tumour",
            floor=(
                Floor("finding_accuracy", 0.99, "tumour / no tumour accuracy on held-out images"),
                Floor("tumour_sensitivity", 0.99, "tumour sensitivity on held-out images"),
            ),
            domain=Domain(("CT", "MR"), HEAD, "an axial brain CT or MRI slice"),
        ),
        TaskSpec(
            "spine-fracture",
            "spine-fracture-ct",
            "fracture",
            size=128,
            # Fractures are read in a bone window (centre 400 / width 1800 is a usual one); the
            # file's own VOI window is often soft tissue, where cortex and fracture lines
            # saturate. The training pictures' window is not recorded: a stated choice, to be
            # checked against DICOM studies before a spine model is served.
            window={"center": 400.0, "width": 1800.0, "name": "bone"},
            floor=(Floor("auc", 0.80, "ROC AUC on held-out images"),),
            domain=Domain(("CT",), ("CSPINE", "NECK", "SPINE"), "a cervical spine CT image"),
            copy_group=spine_base,
        ),
    )
}


def check_floor(task: TaskSpec, validation: dict | None) -> tuple[bool, str]:
    """(validated, reason): whether every floor figure in `validation` reaches its minimum."""
    if not task.floor:
        return False, f"{task.name} has no validation floor"
    if not validation:
        return False, "no validation figures"
    misses, meets = [], []
    for floor in task.floor:
        value = validation.get(floor.figure)
        if not isinstance(value, int | float):
            misses.append(f"{floor.figure} ({floor.meaning}) not measured")
        elif value < floor.minimum:
            misses.append(f"{floor.figure} {value:.3f} < {floor.minimum} ({floor.meaning})")
        else:
            meets.append(f"{floor.figure} {value:.3f} >= {floor.minimum}")
    if misses:
        return False, "below the floor: " + "; ".join(misses)
    return True, "meets the floor: " + "; ".join(meets)


def get_task(name: str) -> TaskSpec:
    try:
        return TASK_SPECS[name]
    except KeyError:
        raise TrainingError(f"unknown task {name!r}; known: {', '.join(TASK_SPECS)}") from None
