"""Where training reads and writes by default: every CLI's defaults come from here."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "datasets"
MODELS_ROOT = REPO / "model-server" / "models"
REPORTS_ROOT = REPO / "training" / "reports"
CHECKPOINTS = REPO / "build" / "checkpoints"
CACHE_DIR = REPO / "build" / "cache"
KFOLD_OUT = REPO / "build" / "crossval"


def dataset_folder(task, data: Path | None = None) -> Path:
    """`data`, or the task's folder (TaskSpec.dataset_dir) under the shared datasets root."""
    return data or DEFAULT_DATA_ROOT / task.dataset_dir
