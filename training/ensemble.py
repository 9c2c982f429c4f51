"""Average several checkpoints of one task into one served model, then calibrate, evaluate and
export it like `training.train` does.

`python -m training.ensemble --task brain-tumor --members build/checkpoints/A.weights.h5 B...`

Members must have been trained on the same split (the same data and split seed, stored in their
checkpoint metadata), or the validation figures would count images a member trained on. The
ensemble's input size is the largest member's; a smaller member gets the image resized inside the
graph (bilinear, antialiased), so the gateway still sends one tensor.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from training import cli
from training.cli import TrainingError, dataset_folder
from training.data.prepare import prepare
from training.evaluation.validation import evaluate
from training.fit import predict_logits
from training.nets.checkpoints import load_checkpoint
from training.pipeline import export_version
from training.tasks import get_task

FLAGS = ("--task", "--data", "--seed", "--flip-tta", "--models-root", "--reports-root")


def check_members(metas: list[dict], seed: int, labels: list[str]) -> None:
    """Refuse members that disagree on labels, channels or split seed."""
    for meta in metas:
        missing = {"labels", "split_seed"} - set(meta)
        if missing:
            raise TrainingError(
                f"a member checkpoint lacks {sorted(missing)} (saved before training.train "
                "recorded them): retrain it, or add them to its .json if you know them"
            )
        if meta["labels"] != labels or meta["n_classes"] != len(labels):
            raise TrainingError(
                f"member labels {meta.get('labels')} differ from the data's {labels}"
            )
        if meta["split_seed"] != seed:
            raise TrainingError(
                f"a member was trained on split seed {meta['split_seed']}, not {seed}: its "
                "validation images would include its training images"
            )
        if meta["channels"] != metas[0]["channels"]:
            raise TrainingError("members disagree on the number of channels")


def average_model(members: list, sizes: list[int], size: int, channels: int):
    """One Keras model: the mean of the members' logits, each at its own input size."""
    import keras
    from keras import layers

    inputs = keras.Input((size, size, channels))
    outputs = []
    for k, (model, member_size) in enumerate(zip(members, sizes, strict=True), start=1):
        model.name = f"member{k}_{model.name}"  # members often share an architecture's name
        x = inputs
        if member_size != size:
            x = layers.Resizing(member_size, member_size, antialias=True)(x)
        outputs.append(model(x))
    mean = layers.Average()(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, mean, name="ensemble")


def describe_member(meta: dict, k: int, report_dir: Path) -> dict:
    """The member's facts for the report; its own report is copied next to the ensemble's
    (without the split and audit, which are the ensemble's own)."""
    out = {key: meta.get(key) for key in ("arch", "size", "command")}
    source = Path(meta["report"]) if meta.get("report") else None
    if source and source.is_dir():
        name = f"member{k}-{meta['arch']}-{meta['size']}"
        shutil.copytree(
            source, report_dir / name, ignore=shutil.ignore_patterns("split.json", "audit.md")
        )
        out["report"] = name
    return out


def summary(metrics: dict) -> dict:
    """The headline validation figures (per-class F1 included)."""
    out = {key: metrics[key] for key in ("accuracy", "macro_f1", "auc", "ece") if key in metrics}
    out["f1"] = {label: round(m["f1"], 3) for label, m in metrics["per_class"].items()}
    if "scan_level" in metrics:
        out["scan_auc"] = metrics["scan_level"]["auc"]
    return out


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(description=__doc__, parents=[cli.parent(*FLAGS)])
    out.add_argument("--members", type=Path, nargs="+", required=True)
    out.add_argument(
        "--evaluate-only", action="store_true", help="print the validation figures, export nothing"
    )
    return out


@cli.exits_on_error
def main(argv: list[str] | None = None) -> None:
    from training.evaluation.report import write_report

    args = parser().parse_args(argv)
    started = time.time()
    task = get_task(args.task)
    data = dataset_folder(task, args.data)
    loaded = [load_checkpoint(path) for path in args.members]
    metas = [meta for _, meta in loaded]
    size = max(meta["size"] for meta in metas)
    p = prepare(task, data, size, args.seed, None)
    check_members(metas, args.seed, p.labels)
    model = average_model(
        [m for m, _ in loaded], [meta["size"] for meta in metas], size, task.channels
    )
    metrics, probs = evaluate(p, predict_logits(model, p.x_val, args.flip_tta), task)
    if args.evaluate_only:
        print(json.dumps(summary(metrics), indent=1))
        return
    version_dir, report_dir = export_version(model, task, p, size, metrics, args, probs)
    metrics["train_minutes"] = (time.time() - started) / 60  # assembling only; see members
    metrics["members"] = [
        describe_member(meta, k, report_dir) for k, meta in enumerate(metas, start=1)
    ]
    command = cli.recorded_command("training.ensemble", sys.argv[1:] if argv is None else argv)
    write_report(report_dir, version_dir, task, p, metrics, probs, {}, command)
    print(f"exported {version_dir}; report {report_dir}", flush=True)


if __name__ == "__main__":
    main()
