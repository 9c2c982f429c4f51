"""Golden answers for the smoke: a version's probabilities on exactly the smoke test's inputs.

    python -m training.golden --task brain-stroke --version 3
    python -m training.golden --all                      # every version under the models root

Runs the exported SavedModel with TensorFlow on the smoke's synthetic image and series
(ct_contract/smoke_probe.py), each preprocessed by the gateway's own functions
(ct_contract/preprocess.py), and writes <models root>/<task>/<version>/smoke_golden.json. TF
Serving reads only saved_model.pb, variables/, assets/ and assets.extra/tf_serving_warmup_requests
of a version folder; other files there (the model card, this) are ignored, as the TF Serving
compatibility test (make tf-compat) shows.
The smoke (`ct-triage smoke`, ct_local/smoke/) then fails when the gateway answers with another
version or other probabilities.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ct_contract import signatures as mc
from ct_contract.preprocess import decode_single, to_model_input
from ct_contract.smoke_probe import GOLDEN_FILE, smoke_inputs
from training.cli import MODELS_ROOT as MODELS


def golden(version_dir: Path, task: str, version: int) -> dict:
    """The golden answer of one exported version on the smoke's inputs."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(version_dir))
    serve = loaded.signatures[mc.PREDICT_SIGNATURE]
    spec = serve.structured_input_signature[1][mc.INPUT_KEY]
    size, channels, dtype = spec.shape[1], spec.shape[3], spec.dtype.as_numpy_dtype
    info = loaded.signatures[mc.INFO_SIGNATURE](**{mc.INFO_INPUT_KEY: tf.zeros([1], tf.int32)})
    labels = [s.decode() for s in info[mc.LABELS_KEY].numpy()[0]]

    def run(data: bytes) -> dict:
        # As gateway/decoding.py: decode (pictures need no window), letterbox, model dtype.
        pixels = to_model_input(decode_single(data).image, size, channels).astype(dtype)
        return serve(**{mc.INPUT_KEY: tf.constant(pixels[np.newaxis])})

    def probabilities(out: dict) -> dict[str, float]:
        probs = out[mc.PROBABILITIES_KEY].numpy()[0]
        return {label: float(p) for label, p in zip(labels, probs, strict=True)}

    image, files = smoke_inputs()
    answers = {"predict": run(image), **{name: run(data) for name, data in files}}
    out = {
        "task": task,
        "version": version,
        "note": "written by python -m training.golden: ct-triage smoke's expected answers",
        "predict": probabilities(answers["predict"]),
        "series": {name: probabilities(answers[name]) for name, _ in files},
    }
    if mc.OOD_SCORE_KEY in answers["predict"]:  # the out-of-domain score of each input
        out["ood"] = {k: float(v[mc.OOD_SCORE_KEY].numpy()[0]) for k, v in answers.items()}
    return out


def write_golden(models_root: Path, task: str, version: int) -> Path:
    version_dir = Path(models_root) / task / str(version)
    if not (version_dir / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{version_dir} holds no SavedModel")
    path = version_dir / GOLDEN_FILE
    path.write_text(json.dumps(golden(version_dir, task, version), indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-root", type=Path, default=MODELS)
    parser.add_argument("--task")
    parser.add_argument("--version", type=int)
    parser.add_argument("--all", action="store_true", help="every version of every task")
    args = parser.parse_args(argv)
    if args.all:
        targets = [
            (task.name, int(v.name))
            for task in sorted(args.models_root.iterdir())
            if task.is_dir()
            for v in sorted(task.iterdir())
            if v.name.isdigit() and (v / "saved_model.pb").is_file()
        ]
    elif args.task and args.version:
        targets = [(args.task, args.version)]
    else:
        parser.error("give --task and --version, or --all")
    for task, version in targets:
        try:
            print(write_golden(args.models_root, task, version))
        except FileNotFoundError as err:
            raise SystemExit(str(err)) from None


if __name__ == "__main__":
    main()
