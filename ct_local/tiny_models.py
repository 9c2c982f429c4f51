"""Tiny untrained models with the real serving contract, for tests and benchmarks.

Exported by `python -m training.export` (a child process, so the caller stays free of TensorFlow).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ct_local.processes import PYTHON, REPO

# (task, labels, size, threshold, positive)
TINY_MODELS = (
    ("brain-stroke", "Normal,Stroke", 32, 0.4, 1),
    (
        "brain-tumor",
        "ct_healthy,ct_tumor,mri_glioma,mri_healthy,mri_meningioma,mri_pituitary,mri_tumor",
        48,
        -1.0,
        -1,
    ),
)
TINY_MODEL_NAMES = [t[0] for t in TINY_MODELS]


def export_tiny_model(
    root: Path,
    task: str,
    labels: str,
    size: int,
    threshold: float,
    positive: int,
    version: int | None = None,
    seed: int = 0,
) -> Path:
    cmd = [
        PYTHON,
        "-m",
        "training.export",
        str(root),
        "--task",
        task,
        "--labels",
        labels,
        "--size",
        str(size),
        "--threshold",
        str(threshold),
        "--positive-index",
        str(positive),
        "--seed",
        str(seed),
    ]
    if version:
        cmd += ["--version", str(version)]
    out = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True, timeout=300)
    return Path(out.stdout.strip().splitlines()[-1])


def write_models_config(path: Path, models_root: Path, names: list[str]) -> Path:
    entries = "".join(
        f'  config {{\n    name: "{n}"\n    base_path: "{models_root / n}"\n'
        f'    model_platform: "tensorflow"\n  }}\n'
        for n in names
    )
    path.write_text(f"model_config_list {{\n{entries}}}\n")
    return path


def export_tiny_models(root: Path) -> Path:
    """Every tiny model, version 1, under `root`; returns their models.config."""
    for task, labels, size, threshold, positive in TINY_MODELS:
        export_tiny_model(root, task, labels, size, threshold, positive, version=1)
    return write_models_config(root / "models.config", root, TINY_MODEL_NAMES)
