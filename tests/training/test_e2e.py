"""Tiny end-to-end: Kaggle-layout spine folder -> audit -> split -> train -> export -> served by
the model server -> predicted through the real gRPC API. One epoch on a few synthetic images."""

from __future__ import annotations

import json
import subprocess

import grpc
import numpy as np
import pytest

from ct_contract import signatures as mc
from ct_contract.preprocess import load_model_input
from ct_local.standin import start_model_server
from tests.fixtures.common import REPO, write_models_config
from tests.training.spine_data import kaggle_spine_folder, tiny_spine_training
from training.tasks import get_task

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_train_export_serve_predict(tmp_path):
    data = kaggle_spine_folder(tmp_path / "data")
    models, reports = tmp_path / "models", tmp_path / "reports"
    cmd = tiny_spine_training(data, "32", models, reports, tmp_path / "checkpoints")
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    version_dir = models / "spine-fracture" / "1"
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
    card = (version_dir / "model_card.md").read_text()
    assert "fracture, normal" in card and "Training command" in card
    report_dir = reports / "spine-fracture" / "v1"
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["threshold"] <= 1.0 and metrics["positive_index"] == 0
    assert metrics["latency_batch1"]["median_ms"] > 0
    for plot in ("confusion_matrix.png", "roc.png", "reliability.png", "training_curves.png"):
        assert (report_dir / plot).stat().st_size > 1000
    split = json.loads((report_dir / "split.json").read_text())
    assert not set(split["train"]) & set(split["val"])

    server = start_model_server(
        write_models_config(tmp_path / "m.config", models, ["spine-fracture"])
    )
    try:
        _predict_and_check(server.target, data, metrics["threshold"])
    finally:
        server.stop()


def _predict_and_check(target: str, data, threshold: float) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    image = next((data / "cervical fracture" / "val" / "fracture").glob("*.png"))
    pixels = load_model_input(image.read_bytes(), 32, 1)[np.newaxis]
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "spine-fracture"
        req.inputs[mc.INPUT_KEY].CopyFrom(tf.make_tensor_proto(pixels))
        served = stub.Predict(req, timeout=30).outputs
        probs = tf.make_ndarray(served[mc.PROBABILITIES_KEY])
        assert probs.shape == (1, 2) and abs(float(probs.sum()) - 1) < 1e-4
        assert tf.make_ndarray(served[mc.OOD_SCORE_KEY]).shape == (1,)

        info = predict_pb2.PredictRequest()
        info.model_spec.name = "spine-fracture"
        info.model_spec.signature_name = mc.INFO_SIGNATURE
        info.inputs[mc.INFO_INPUT_KEY].CopyFrom(tf.make_tensor_proto(np.zeros(1, np.int32)))
        out = stub.Predict(info, timeout=30).outputs
        assert [s.decode() for s in tf.make_ndarray(out[mc.LABELS_KEY])[0]] == [
            "fracture",
            "normal",
        ]
        assert tf.make_ndarray(out[mc.THRESHOLD_KEY])[0] == pytest.approx(threshold)
        assert tf.make_ndarray(out[mc.POSITIVE_INDEX_KEY])[0] == 0
        described = json.loads(tf.make_ndarray(out[mc.INFO_JSON_KEY])[0])
        assert described[mc.INFO_WINDOW] == get_task("spine-fracture").window
        domain = described[mc.INFO_DOMAIN]
        assert domain["modalities"] == ["CT"] and domain["ood"]["threshold"] > 0
        assert (
            described[mc.INFO_VALIDATION]["auc"] >= 0
            and "seed 1337" in (described[mc.INFO_VALIDATION]["how"])
        )

        req.model_spec.signature_name = mc.EXPLAIN_SIGNATURE
        out = stub.Predict(req, timeout=30).outputs
        np.testing.assert_allclose(tf.make_ndarray(out[mc.PROBABILITIES_KEY]), probs, atol=1e-6)
        heat = tf.make_ndarray(out[mc.HEATMAP_KEY])
        assert heat.shape[0] == 1 and heat.ndim == 3 and 0 <= heat.min() <= heat.max() <= 1
        assert tf.make_ndarray(out[mc.HEATMAP_CLASS_KEY]).tolist() == [0]  # the positive class


def test_pretrained_backbone_and_copy_groups_on_the_kaggle_layout(tmp_path):
    """The dataset's augmented copies of one slice stay on one side of the split; the ImageNet
    EfficientNet-Lite0 backbone trains and exports with its out-of-domain score."""
    import tensorflow as tf

    data = kaggle_spine_folder(tmp_path / "data", per_class=3, copies=3)
    models, reports = tmp_path / "models", tmp_path / "reports"
    cmd = tiny_spine_training(
        data, "64", models, reports, tmp_path / "ck", "--arch", "efficientnet_lite0"
    )
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    split = json.loads((reports / "spine-fracture" / "v1" / "split.json").read_text())
    base = lambda rel: rel.rsplit("/", 1)[-1].rsplit(" (", 1)[0]  # noqa: E731
    assert not {base(r) for r in split["train"]} & {base(r) for r in split["val"]}

    loaded = tf.saved_model.load(str(models / "spine-fracture" / "1"))
    image = next((data / "cervical fracture" / "train" / "fracture").glob("*.png"))
    spine = load_model_input(image.read_bytes(), 64, 1)[np.newaxis]
    blank = np.zeros_like(spine)
    scores = loaded.signatures[mc.PREDICT_SIGNATURE](
        image=tf.constant(np.concatenate([spine, blank]))
    )
    ood = scores[mc.OOD_SCORE_KEY].numpy()
    info = loaded.signatures[mc.INFO_SIGNATURE](batch=tf.constant([0]))
    threshold = json.loads(info[mc.INFO_JSON_KEY].numpy()[0])[mc.INFO_DOMAIN]["ood"]["threshold"]
    assert ood[1] > threshold >= ood[0]
