"""Checkpoints: weights plus a metadata file (`<name>.weights.json`) holding what rebuilds the model
and re-creates its split. `read_meta` is the one reader of that metadata; `transfer_backbone`
starts a new model from a checkpoint's layers."""

from __future__ import annotations

import json
from pathlib import Path

from training.cli import CHECKPOINTS


def meta_path(checkpoint: Path) -> Path:
    return Path(checkpoint).with_suffix(".json")


def read_meta(checkpoint: Path) -> dict:
    """The metadata of a checkpoint (arch, size, channels, n_classes, labels, split_seed, ...)."""
    return json.loads(meta_path(checkpoint).read_text())


def save_checkpoint(
    model,
    task: str,
    arch: str,
    size: int,
    channels: int,
    labels: list[str],
    seed: int,
    command: str = "",
    folder: Path = CHECKPOINTS,
) -> Path:
    """Weights plus what is needed to rebuild the model and re-create its split (the seed)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{task}-{arch}-{size}.weights.h5"
    model.save_weights(path)
    meta = {
        "arch": arch,
        "size": size,
        "channels": channels,
        "n_classes": len(labels),
        "labels": labels,
        "split_seed": seed,
        "command": command,
    }
    meta_path(path).write_text(json.dumps(meta))
    return path


def load_checkpoint(checkpoint: Path):
    """Rebuild a checkpoint's model with its weights; returns (model, metadata)."""
    from training.nets.architectures import build

    meta = read_meta(checkpoint)
    model = build(meta["arch"], meta["size"], meta["channels"], meta["n_classes"])
    model.load_weights(checkpoint)
    return model, meta


def note_report(checkpoint: Path, report_dir: Path) -> None:
    """Remember which report belongs to a checkpoint (an ensemble copies its members' reports)."""
    meta = read_meta(checkpoint)
    meta["report"] = str(Path(report_dir).resolve())
    meta_path(checkpoint).write_text(json.dumps(meta))


def transfer_backbone(model, checkpoint: Path) -> None:
    """Initialise layers from one of the project's own checkpoints: weighted layers are paired in
    order and copied where their shapes match (the classifier and a changed stem are skipped)."""
    from training.nets.architectures import build

    meta = read_meta(checkpoint)
    source = build(meta["arch"], meta["size"], meta["channels"], meta["n_classes"])
    source.load_weights(checkpoint)
    src_layers = [layer for layer in source.layers if layer.weights]
    dst_layers = [layer for layer in model.layers if layer.weights]
    copied = 0
    for dst, src in zip(dst_layers, src_layers, strict=False):
        shapes = [tuple(w.shape) for w in dst.get_weights()]
        if shapes == [tuple(w.shape) for w in src.get_weights()]:
            dst.set_weights(src.get_weights())
            copied += 1
    print(f"initialised {copied}/{len(dst_layers)} weighted layers from {checkpoint}", flush=True)
