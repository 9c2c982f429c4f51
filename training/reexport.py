"""Re-export a committed model version with today's signatures (explain, info_json), same weights.

`python -m training.reexport --task brain-stroke --from-version 2`

The architecture, input size and flip TTA come from the version's model card (its training
command; flags here override), the temperature, threshold and scan rule from its report's
metrics.json. The Keras model is rebuilt from training/nets/architectures.py and given the old
SavedModel's variables in order, every shape checked; the new version must give the old one's
probabilities on the old validation images (max abs difference < 1e-5) or nothing is kept.
Validation figures for info_json (`validation_of`): brain-stroke the repeated grouped hold-out
(--crossval) beside the single split; brain-tumor finding-level figures measured here on the old
validation split; else the report's. Card and report: `model_card`, `write_report`.

One file although it is long: the rebuild, the validation figures and the card are one re-export
(add_ood.py, another re-export, shares the card and report); split at 300 lines they were three
modules that only this one imported.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np

from training import cli
from training.cli import REPO, REPORTS_ROOT, TrainingError, dataset_folder
from training.data.images import Record, load_pixels
from training.evaluation import metrics as ev
from training.evaluation.latency import measure_latency
from training.evaluation.scans import served_scan_rule
from training.evaluation.validation import finding_figures
from training.tasks import TaskSpec, get_task

MAX_ABS_DIFF = 1e-5
CROSSVAL = REPORTS_ROOT / "brain-stroke" / "crossval-plain_cnn_mirror-128.md"
FLAGS = ("--task", "--data", "--arch", "--size", "--flip-tta", "--models-root", "--reports-root")


def load_weights_in_order(model, loaded) -> None:
    """Assign the SavedModel's variables to `model`'s, paired in order; names' last part (kernel,
    gamma, moving_mean ...) and shapes must agree, else TrainingError."""
    old, new = list(loaded.variables), list(model.variables)
    if len(old) != len(new):
        raise TrainingError(f"{len(old)} saved variables, {len(new)} in the rebuilt model")
    for src, dst in zip(old, new, strict=True):
        kind = src.name.split("/")[-1].split(":")[0]
        if tuple(src.shape) != tuple(dst.shape) or kind != dst.path.split("/")[-1]:
            raise TrainingError(f"{src.name} {src.shape} does not fit {dst.path} {dst.shape}")
        dst.assign(src.numpy())


def serve_probs(signature, x: np.ndarray, batch: int = 64) -> np.ndarray:
    import tensorflow as tf

    out = [
        signature(image=tf.constant(x[i : i + batch]))["probabilities"].numpy()
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(out)


def validation_images(task: TaskSpec, report_dir: Path, labels: list[str], size: int, data=None):
    """The old version's validation images (its split.json) through the training pipeline."""
    data = dataset_folder(task, data)
    files = json.loads((report_dir / "split.json").read_text())["val"]
    records = [Record(data / f, Path(f).parent.name, None, None) for f in files]
    x = load_pixels(records, size, task.channels)
    return x, np.array([labels.index(r.label) for r in records]), files


def check_same(old_sig, new_sig, x: np.ndarray) -> float:
    diff = float(np.abs(serve_probs(old_sig, x) - serve_probs(new_sig, x)).max())
    if not diff < MAX_ABS_DIFF:
        raise TrainingError(f"re-exported probabilities differ by {diff:.2e} (>= {MAX_ABS_DIFF})")
    return diff


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(description=__doc__, parents=[cli.parent(*FLAGS)])
    out.set_defaults(arch=None, flip_tta=None)  # None: as the version's training command
    out.add_argument("--from-version", type=int, required=True)
    out.add_argument("--crossval", type=Path, default=CROSSVAL, help="brain-stroke")
    return out


def rebuild(loaded, task: TaskSpec, card: str, args: argparse.Namespace):
    """The old version's Keras model with its weights; returns (model, labels, size, flip_tta)."""
    import tensorflow as tf

    from training.nets.architectures import build

    flags = training_flags(card)
    info = loaded.signatures["model_info"](batch=tf.zeros([1], tf.int32))
    labels = [s.decode() for s in info["labels"].numpy()[0]]
    spec = loaded.signatures["serving_default"].structured_input_signature[1]["image"]
    size = args.size or spec.shape[1]
    flip_tta = flags["flip_tta"] if args.flip_tta is None else args.flip_tta
    model = build(args.arch or flags["arch"], size, task.channels, len(labels))
    load_weights_in_order(model, loaded)
    return model, labels, size, flip_tta


@cli.exits_on_error
def main(argv: list[str] | None = None) -> None:
    import tensorflow as tf

    from training.export.explain import cam_layer_name
    from training.export.savedmodel import build_info, export_model, next_version

    args = parser().parse_args(argv)
    task, old = get_task(args.task), args.from_version
    old_dir = args.models_root / task.name / str(old)
    old_report = args.reports_root / task.name / f"v{old}"
    card = (old_dir / "model_card.md").read_text()
    metrics = json.loads((old_report / "metrics.json").read_text())
    loaded = tf.saved_model.load(str(old_dir))
    model, labels, size, flip_tta = rebuild(loaded, task, card, args)

    x, y, _ = validation_images(task, old_report, labels, size, args.data)
    old_probs = serve_probs(loaded.signatures["serving_default"], x)
    accuracy = float((old_probs.argmax(axis=1) == y).mean())
    if abs(accuracy - metrics["accuracy"]) > 1e-6:
        raise TrainingError(
            f"accuracy {accuracy:.4f} on the loaded validation images, {metrics['accuracy']:.4f} "
            "in the report: these are not the pixels the version was evaluated on"
        )
    validation = validation_of(task, metrics, args.crossval, y, old_probs, labels, old)
    scan = metrics.get("scan_level")
    rule = served_scan_rule(scan["threshold"]) if scan else None
    info_json = build_info(task.name, labels, validation, scan_rule=rule)

    new = next_version(args.models_root / task.name)
    version_dir = export_model(
        model,
        args.models_root,
        task.name,
        labels,
        size,
        task.channels,
        threshold=metrics.get("threshold", -1.0),
        positive_index=metrics.get("positive_index", -1),
        temperature=metrics["temperature"],
        version=new,
        flip_tta=flip_tta,
        info=info_json,
    )
    diff = _checked(loaded, version_dir, x)
    command = "python -m training.reexport " + shlex.join(sys.argv[1:] if argv is None else argv)
    layer = cam_layer_name(model)
    metrics.update(
        reexport_of=old,
        reexport_command=command,
        reexport_max_abs_diff=diff,
        info_json=info_json,
        gradcam_layer=layer,
        latency_batch1=measure_latency(version_dir, size, task.channels),
        explain_latency_batch1=measure_latency(version_dir, size, task.channels, 50, "explain"),
    )
    note, extra = _notes(old, command, layer, diff, len(x), info_json)
    new_report = args.reports_root / task.name / f"v{new}"
    write_report(old_report, new_report, old, new, note, metrics)
    (version_dir / "model_card.md").write_text(model_card(card, task.name, old, new, extra))
    print(f"exported {version_dir}; report {new_report}", flush=True)


def _notes(old: int, command: str, layer: str, diff: float, n: int, info_json: dict):
    """The report's note on the re-export and the model card's extra lines."""
    note = (
        f"**Re-export of version {old} with the same weights** (no retraining), adding the "
        f"`explain` signature (Grad-CAM on `{layer}`) and `info_json`. Re-export command: "
        f"`{command}`. Its served probabilities equal version {old}'s on {n} validation "
        f"images (max abs difference {diff:.1e}).\n\n"
        f"info_json:\n```json\n{json.dumps(info_json, indent=1)}\n```"
    )
    verdict = "validated" if info_json["validated"] else "NOT validated"
    extra = [
        f"Re-export: version {old}'s weights unchanged (probabilities equal to {diff:.1e}); "
        f"re-export command: `{command}`",
        f"Explain: Grad-CAM on `{layer}`, in the graph (signature `explain`)",
        f"Acceptance: {verdict}: {info_json['validated_reason']}",
    ]
    return note, extra


def _checked(loaded, version_dir: Path, x: np.ndarray) -> float:
    """The new version serves the old one's probabilities, and explain serves its own (else the
    new version folder is removed)."""
    import tensorflow as tf

    try:
        reloaded = tf.saved_model.load(str(version_dir))
        diff = check_same(
            loaded.signatures["serving_default"], reloaded.signatures["serving_default"], x
        )
        check_same(reloaded.signatures["serving_default"], reloaded.signatures["explain"], x[:64])
    except TrainingError:
        shutil.rmtree(version_dir)
        raise
    return diff


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


def stroke_validation(metrics: dict, crossval: Path) -> dict:
    """The repeated grouped hold-out (the floor's figure) beside the served model's own split."""
    text = crossval.read_text()
    mean = re.search(r"scan AUC (\d+\.\d+) ± (\d+\.\d+)", text)
    splits = len(re.findall(r"^\| \d+ \|", text, re.MULTILINE))
    if not mean or not splits:
        raise TrainingError(f"{crossval} gives no 'scan AUC mean ± sd' line or seed rows")
    scan = metrics["scan_level"]
    return {
        "how": (
            f"scan_auc: repeated grouped hold-out, {splits} seeded scan-grouped splits of about "
            "14 validation scans, the training recipe at 128 px (12 epochs, best epoch per "
            f"split; {crossval.relative_to(REPO)}): a re-run of the recipe, not these weights. "
            "*_single_split: these weights on their own split (seed 1337), chosen as the best "
            f"of three runs on the same {scan['scans']} scans, which also chose the threshold: "
            "optimistic."
        ),
        "scan_auc": float(mean.group(1)),
        "scan_auc_sd": float(mean.group(2)),
        "splits": splits,
        "scan_auc_single_split": scan["auc"],
        "scans_single_split": scan["scans"],
        "slice_auc_single_split": metrics["auc"],
        "scan_sensitivity_single_split": scan["at_threshold"]["sensitivity"],
        "scan_specificity_single_split": scan["at_threshold"]["specificity"],
    }


def class_figures(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    m = ev.classification_metrics(y, probs, labels)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "images": int(len(y))}


def tumour_validation(task: TaskSpec, y, probs, labels: list[str], version: int) -> dict:
    """Finding-level figures, 7-class figures with and without mri_tumor, and mri_tumor alone."""
    out = {
        "how": (
            f"the validation split of version {version} (seed 1337, {len(y)} images; its "
            "split.json), which also chose early stopping, the temperature and this model "
            "among the runs in training/reports/brain-tumor/experiments.md: optimistic. "
            "Images, not patients (the data has no patient ids); 95% CIs bootstrap images."
        ),
        **finding_figures(y, probs, labels, task.label_groups, task.positive_finding),
        "classes": class_figures(y, probs, labels),
    }
    if "mri_tumor" in labels:
        k = labels.index("mri_tumor")
        keep = y != k
        rest = [lab for lab in labels if lab != "mri_tumor"]
        sub = np.delete(probs[keep], k, axis=1)
        out["classes_without_mri_tumor"] = {
            **class_figures(np.where(y[keep] > k, y[keep] - 1, y[keep]), sub, rest),
            "how": "images of other classes, argmax over the other six",
        }
        per = ev.classification_metrics(y, probs, labels)["per_class"]["mri_tumor"]
        out["mri_tumor"] = {key: per[key] for key in ("precision", "recall", "f1", "support")}
    return out


def validation_of(task: TaskSpec, metrics: dict, crossval: Path, y, probs, labels, old: int):
    """The re-export's info_json validation for `task` (else the old report's AUC)."""
    if task.name == "brain-stroke":
        return stroke_validation(metrics, crossval)
    if task.label_groups:
        return tumour_validation(task, y, probs, labels, old)
    return {"how": f"version {old}'s report", "auc": metrics["auc"]}


if __name__ == "__main__":
    main()
