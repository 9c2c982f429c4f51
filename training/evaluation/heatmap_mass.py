"""Where a served model's heatmaps fall: the share of each positive scan's Grad-CAM mass that lies
inside the brain crop (training/nets/architectures.py BrainCrop's box on the same input), per
version.

    python -m training.evaluation.heatmap_mass --task brain-stroke --versions 3 4

Slices of the task's positive scans (../shared/datasets/<task>), preprocessed as the gateway
does; the `explain` signature's heatmap is resized to the input and weighed against the box.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ct_contract import signatures as mc
from training.cli import MODELS_ROOT, dataset_folder
from training.data.audit import run_audit
from training.data.images import load_pixels
from training.nets.architectures import BrainCrop
from training.tasks import get_task


def box_masks(pixels: np.ndarray) -> np.ndarray:
    """[N, S, S] 0/1: BrainCrop's box (normalised y1, x1, y2, x2) of each image, as a mask."""
    size = pixels.shape[1]
    boxes = BrainCrop(size).boxes(pixels.astype(np.float32) / 255.0).numpy()
    grid = (np.arange(size) + 0.5) / size
    masks = np.zeros(pixels.shape[:3], np.float32)
    for k, (y1, x1, y2, x2) in enumerate(boxes):
        masks[k] = np.outer((grid >= y1) & (grid <= y2), (grid >= x1) & (grid <= x2))
    return masks


def inside_share(version_dir: Path, pixels: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image: heatmap mass inside its mask / all mass (NaN for an all-zero heatmap)."""
    import tensorflow as tf

    explain = tf.saved_model.load(str(version_dir)).signatures[mc.EXPLAIN_SIGNATURE]
    size = explain.structured_input_signature[1][mc.INPUT_KEY].shape[1]
    out = []
    for i in range(0, len(pixels), 16):
        batch = tf.image.resize(pixels[i : i + 16], (size, size)).numpy().round().astype(np.uint8)
        heat = explain(image=tf.constant(batch))[mc.HEATMAP_KEY].numpy()[..., None]
        heat = tf.image.resize(heat, pixels.shape[1:3]).numpy()[..., 0]
        total = heat.sum(axis=(1, 2))
        inside = (heat * masks[i : i + 16]).sum(axis=(1, 2))
        out.append(np.where(total > 0, inside / np.maximum(total, 1e-12), np.nan))
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="brain-stroke")
    p.add_argument("--versions", type=int, nargs="+", required=True)
    p.add_argument("--data", type=Path)
    p.add_argument("--size", type=int, default=256, help="input size the masks are drawn at")
    args = p.parse_args(argv)
    task = get_task(args.task)
    audit = run_audit(dataset_folder(task, args.data), task)
    records = [r for r in audit.records if r.label == task.positive_label]
    pixels = load_pixels(records, args.size, task.channels)
    masks = box_masks(pixels)
    scans = np.array([r.scan for r in records])
    n_scans = len(set(scans))
    print(
        f"{len(records)} slices of {n_scans} positive scans; box = {masks.mean():.2f} of the image"
    )
    print("| version | mass inside the brain box: mean over slices | median of scan means |")
    print("|---|---|---|")
    for version in args.versions:
        share = inside_share(MODELS_ROOT / task.name / str(version), pixels, masks)
        per_scan = [np.nanmean(share[scans == s]) for s in sorted(set(scans))]
        print(f"| {version} | {np.nanmean(share):.3f} | {np.nanmedian(per_scan):.3f} |")


if __name__ == "__main__":
    main()
