"""Where things are on a developer machine: the repository, the committed models, ../shared."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL_SERVER_DIR = REPO / "model-server"
MODELS_ROOT = MODEL_SERVER_DIR / "models"  # the committed models (the image's /models)
MODELS_CONFIG = MODEL_SERVER_DIR / "models.config"
SHARED = Path(os.environ.get("CT_SHARED_DIR", REPO.parent / "shared"))
SAMPLES = REPO / "docs" / "samples"  # public sample pictures, committed
DATASETS = SHARED / "datasets"
