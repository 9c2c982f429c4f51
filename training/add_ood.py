"""Give a committed model version an out-of-domain score: the next version serves the same
signatures with the same weights, plus OOD_SCORE_KEY (training/nets/ood.py) fitted on the task's
training images, and its info_json gains the task's domain (training/tasks.py) and the threshold.

    python -m training.add_ood --task brain-tumor --from-version 4

The old SavedModel's signatures are called as they are (no Keras rebuild, so nothing about the
classifier can change; the new version must answer the old one's probabilities on the data to
1e-6 or nothing is kept). Held-out scores for the threshold are grouped by the audit's duplicate
clusters (exact and near copies on one side) or by scan.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from ct_contract import signatures as mc
from training.cli import MODELS_ROOT, REPORTS_ROOT, TrainingError, dataset_folder
from training.data.audit import run_audit
from training.data.images import load_pixels
from training.evaluation.latency import measure_latency
from training.export.savedmodel import json_safe, next_version, write_warmup_records
from training.golden import write_golden
from training.reexport import model_card, write_report
from training.tasks import get_task

MAX_ABS_DIFF = 1e-6


class _Served(tf.Module):
    """The old version's signatures, each answer with the OOD score beside it."""

    def __init__(self, old, score_model, info: dict, size: int, channels: int):
        super().__init__()
        self.old, self.score_model = old, score_model
        self.info_text = tf.constant(json.dumps(json_safe(info), sort_keys=True, allow_nan=False))
        spec = tf.TensorSpec([None, size, size, channels], tf.uint8, name=mc.INPUT_KEY)
        self.serve = tf.function(self._serve, input_signature=[spec])
        self.explain = tf.function(self._explain, input_signature=[spec])
        info_spec = tf.TensorSpec([None], tf.int32, name=mc.INFO_INPUT_KEY)
        self.model_info = tf.function(self._model_info, input_signature=[info_spec])

    def _score(self, image):
        pixels = tf.cast(image, tf.float32) / 255.0
        return tf.reshape(tf.cast(self.score_model(pixels, training=False), tf.float32), [-1])

    def _serve(self, image):
        out = dict(self.old.signatures[mc.PREDICT_SIGNATURE](image=image))
        return {**out, mc.OOD_SCORE_KEY: self._score(image)}

    def _explain(self, image):
        out = dict(self.old.signatures[mc.EXPLAIN_SIGNATURE](image=image))
        return {**out, mc.OOD_SCORE_KEY: self._score(image)}

    def _model_info(self, batch):
        out = dict(self.old.signatures[mc.INFO_SIGNATURE](batch=batch))
        out[mc.INFO_JSON_KEY] = tf.fill([tf.shape(batch)[0]], self.info_text)
        return out


def old_facts(old) -> tuple[dict, int, int]:
    """(info_json object, input size, channels) of a loaded version."""
    answer = old.signatures[mc.INFO_SIGNATURE](batch=tf.constant([0]))
    info = json.loads(answer[mc.INFO_JSON_KEY].numpy()[0].decode())
    shape = old.signatures[mc.PREDICT_SIGNATURE].structured_input_signature[1][mc.INPUT_KEY].shape
    return info, int(shape[1]), int(shape[3])


def fit_ood(pixels: np.ndarray, groups: np.ndarray):
    from training.nets.ood import ood_for

    return ood_for(pixels, groups, pixels.shape[1], pixels.shape[3])


def _probs(signatures, pixels: np.ndarray) -> np.ndarray:
    outs = [
        signatures[mc.PREDICT_SIGNATURE](image=tf.constant(pixels[i : i + 64]))
        for i in range(0, len(pixels), 64)
    ]
    return np.concatenate([o[mc.PROBABILITIES_KEY].numpy() for o in outs])


def run(args: argparse.Namespace) -> Path:
    task = get_task(args.task)
    if task.domain is None:
        raise TrainingError(f"{task.name} declares no domain in training/tasks.py")
    old_dir = args.models_root / task.name / str(args.from_version)
    old = tf.saved_model.load(str(old_dir))
    info, size, channels = old_facts(old)
    audit = run_audit(dataset_folder(task, args.data), task)
    pixels = load_pixels(audit.records, size, channels)
    groups = np.array(
        [r.scan or f"cluster-{c}" for r, c in zip(audit.records, audit.cluster_of, strict=True)]
    )
    score_model, ood_info = fit_ood(pixels, groups)
    info[mc.INFO_DOMAIN] = task.domain.to_info(ood_info)
    version = next_version(args.models_root / task.name)
    new_dir = args.models_root / task.name / str(version)
    module = _Served(old, score_model, info, size, channels)
    signatures = {
        mc.PREDICT_SIGNATURE: module.serve,
        mc.EXPLAIN_SIGNATURE: module.explain,
        mc.INFO_SIGNATURE: module.model_info,
    }
    tf.saved_model.save(module, str(new_dir), signatures=signatures)
    try:
        check_same_answers(old, new_dir, pixels[:: max(1, len(pixels) // 256)])
    except TrainingError:
        shutil.rmtree(new_dir)
        raise
    write_warmup_records(new_dir, task.name, size, channels)
    write_golden(args.models_root, task.name, version)
    _card(old_dir, new_dir, task.name, version, args, ood_info, size, channels)
    return new_dir


def check_same_answers(old, new_dir: Path, pixels: np.ndarray) -> None:
    diff = np.abs(
        _probs(old.signatures, pixels)
        - _probs(tf.saved_model.load(str(new_dir)).signatures, pixels)
    )
    if diff.max() > MAX_ABS_DIFF:
        raise TrainingError(f"the new version's probabilities differ by {diff.max():.2e}")
    print(f"same probabilities on {len(pixels)} images (max abs diff {diff.max():.1e})")


def _card(old_dir, new_dir, task, version, args, ood_info, size, channels) -> None:
    """The re-export's card and report (training/reexport.py): the old ones, headed by
    what changed; metrics.json gains the new info_json and latency."""
    command = "python -m training.add_ood " + " ".join(sys.argv[1:])
    latency = measure_latency(new_dir, size, channels)
    old, new = args.from_version, version
    extra = [
        f"Out-of-domain score added to version {old} (weights and probabilities unchanged, "
        f"checked to {MAX_ABS_DIFF:g}); command: `{command}`",
        f"Out of domain: `{mc.OOD_SCORE_KEY}` above {ood_info['threshold']:.4f} "
        f"({ood_info['in_domain_acceptance']:.4f} of held-out training images accepted); "
        f"latency at batch 1 with the score: median {latency['median_ms']:.1f} ms",
    ]
    card = model_card((old_dir / "model_card.md").read_text(), task, old, new, extra)
    (new_dir / "model_card.md").write_text(card)
    old_report = args.reports_root / task / f"v{old}"
    metrics = json.loads((old_report / "metrics.json").read_text())
    info = tf.saved_model.load(str(new_dir)).signatures[mc.INFO_SIGNATURE](batch=tf.constant([0]))
    metrics["info_json"] = json.loads(info[mc.INFO_JSON_KEY].numpy()[0].decode())
    metrics["latency_batch1"] = latency
    note = "\n".join(f"- {line}" for line in extra)
    note += f"\n\nOut-of-domain score: {json.dumps(ood_info, indent=1)}"
    write_report(old_report, args.reports_root / task / f"v{new}", old, new, note, metrics)
    print(f"exported {new_dir}; report {args.reports_root / task / f'v{new}'}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True)
    p.add_argument("--from-version", type=int, required=True)
    p.add_argument("--data", type=Path)
    p.add_argument("--models-root", type=Path, default=MODELS_ROOT)
    p.add_argument("--reports-root", type=Path, default=REPORTS_ROOT)
    args = p.parse_args(argv)
    try:
        run(args)
    except TrainingError as e:
        sys.exit(f"add_ood: {e}")


if __name__ == "__main__":
    main()
