"""A tiny Kaggle-layout spine-fracture folder and the one-epoch training command the end-to-end
and ensemble tests run on it."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.fixtures.common import PYTHON


def kaggle_spine_folder(root, per_class: int = 6, copies: int = 0):
    """The Kaggle 'Spine Fracture Prediction from C.T.' layout: split/class/image, RGB. With
    `copies`, each image comes as that many augmented copies named like the dataset's
    ('CSFDV<n>B<k> (<slice>) (<copy>).png'), and the seed's split puts copies of one base on
    both sides (train and val), as the real data does."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label, shift in (("fracture", 60), ("normal", 0)):
            folder = root / "cervical fracture" / split / label
            folder.mkdir(parents=True)
            for k in range(per_class):
                base = rng.integers(0, 120, (12, 12, 3), dtype=np.uint8) + shift
                if not copies:
                    Image.fromarray(base).resize((224, 224)).save(folder / f"{label}_{k}.png")
                    continue
                for c in range(copies):
                    rotated = Image.fromarray(base).resize((224, 224)).rotate(7 * c)
                    name = f"CSFDV{shift}B{k} ({k + 10}) ({c + 1 + copies * (split == 'val')}).png"
                    rotated.save(folder / name)
    return root


def tiny_spine_training(data, size: str, models, reports, checkpoints, *extra: str) -> list[str]:
    """The command line of a one-epoch spine-fracture run writing only below the given folders."""
    return [
        PYTHON,
        "-m",
        "training.train",
        "--task",
        "spine-fracture",
        "--data",
        str(data),
        "--epochs",
        "1",
        "--size",
        size,
        "--batch-size",
        "4",
        "--models-root",
        str(models),
        "--reports-root",
        str(reports),
        "--checkpoints-dir",
        str(checkpoints),
        *extra,
    ]
