"""Version directories as TF Serving's file-system storage path source reads them, and TF1-style
(graph + signatures, no object graph) SavedModels next to TF2 ones."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from ct_standin.config import ModelConfig, VersionPolicy, list_versions, parse_version, version_dirs
from ct_standin.registry import Registry


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("7", 7),
        ("007", 7),
        ("0", 0),
        (" 12\t", 12),  # safe_strto64 skips C whitespace around the digits
        ("-3", -3),  # negative numbers parse, and are served like any other version
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
        ("9223372036854775808", None),  # out of int64 range
        ("+7", None),
        ("7a", None),
        ("v7", None),
        ("1_000", None),
        ("1e3", None),
        ("-", None),
        ("", None),
        ("٣", None),  # a non-ASCII digit
        (".staging-2", None),
    ],
)
def test_parse_version_follows_safe_strto64(name, version):
    assert parse_version(name) == version


def make_versions(root: Path, names: list[str], without_model=()) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        if name not in without_model:
            (root / name / "saved_model.pb").write_bytes(b"")
    return root


def test_duplicate_versions_load_from_the_last_name_in_sorted_order(tmp_path, caplog):
    root = make_versions(tmp_path, ["007", "7", "0010", "abc", "-1", "12"], without_model=["12"])
    (root / "5").write_text("a file, not a version")
    with caplog.at_level(logging.WARNING, logger="ct_standin.config"):
        dirs = version_dirs(root)
        version_dirs(root)  # polled again: warned once
    assert dirs == {7: root / "7", 10: root / "0010", -1: root / "-1"}
    assert list_versions(root) == [-1, 7, 10]
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "Duplicate version directories detected. Version 7 will be loaded from 7, "
        "007 will be ignored."
    ]


def test_registry_loads_a_version_from_its_own_folder_name(tmp_path):
    root = make_versions(tmp_path / "m", ["-4", "003"])
    loaded = []

    def loader(name, version, path):
        loaded.append((version, path))
        return object()

    registry = Registry([ModelConfig("m", root, VersionPolicy("all"))], loader)
    registry.sync()
    assert sorted(loaded) == [(-4, root / "-4"), (3, root / "003")]
    assert registry.resolve("m")[0] == 3  # latest: -4 is older than 3


def test_a_tf2_model_in_a_zero_padded_folder_is_served(tiny_models_root, tmp_path):
    import tensorflow as tf

    from ct_contract import signatures as mc
    from ct_standin.servable import load_servable

    root = tmp_path / "brain-stroke"
    shutil.copytree(tiny_models_root / "brain-stroke" / "1", root / "007")
    registry = Registry(
        [ModelConfig("brain-stroke", root)], lambda n, v, p: load_servable(n, v, p, False)
    )
    registry.sync()
    version, servable = registry.resolve("brain-stroke")
    pixels = np.zeros((2, 32, 32, 1), np.uint8)
    _, outputs = servable.predict({mc.INPUT_KEY: tf.make_tensor_proto(pixels)})
    assert version == 7 and servable.path == root / "007"
    assert outputs[mc.PROBABILITIES_KEY].shape == (2, 2)


# --- TF1-style SavedModels ----------------------------------------------------------------------


def build_tf1_model(path: Path) -> Path:
    """y = x @ w + b with a variable, a string label per row, and a second signature; the input
    key "in" is a Python keyword, which tf.saved_model.load cannot turn into a parameter name."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        w = v1.get_variable("w", initializer=tf.constant([[1.0], [2.0], [3.0]]))
        y = tf.matmul(x, w) + 0.5
        label = tf.where(y[:, 0] > 10.0, "big", "small")
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(path))
        signatures = {
            "serving_default": v1.saved_model.predict_signature_def(
                {"in": x}, {"out": y, "label": label}
            ),
            "double": v1.saved_model.predict_signature_def({"in": x}, {"twice": x * 2}),
        }
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
        builder.save()
    return path


@pytest.fixture(scope="module")
def tf1_model(tmp_path_factory) -> Path:
    return build_tf1_model(tmp_path_factory.mktemp("tf1") / "m" / "1")


def predict_tf1(servable, x: np.ndarray, signature: str = "", output_filter=()):
    import tensorflow as tf

    name, outputs = servable.predict({"in": tf.make_tensor_proto(x)}, signature, output_filter)
    return name, outputs


def test_a_tf1_model_is_served(tf1_model):
    import grpc
    import tensorflow as tf

    from ct_standin.errors import ServingError
    from ct_standin.servable import load_servable

    servable = load_servable("tf1", 1, tf1_model)
    x = np.array([[1, 1, 1], [2, 2, 2]], np.float32)
    name, outputs = predict_tf1(servable, x)
    assert name == "serving_default"
    np.testing.assert_allclose(outputs["out"], [[6.5], [12.5]])
    assert outputs["label"].tolist() == [b"small", b"big"]
    _, doubled = predict_tf1(servable, x, "double")
    np.testing.assert_array_equal(doubled["twice"], x * 2)
    assert list(predict_tf1(servable, x, output_filter=["label"])[1]) == ["label"]
    assert set(servable.signature_defs) >= {"serving_default", "double"}
    with pytest.raises(ServingError) as wrong:
        servable.predict({"in": tf.make_tensor_proto(np.zeros((1, 4), np.float32))})
    assert wrong.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_tf1_model_batches(tf1_model):
    from concurrent import futures

    from ct_standin.batching import BatchScheduler
    from ct_standin.batching_config import BatchingOptions
    from ct_standin.servable import load_servable

    records = []
    options = BatchingOptions(max_batch_size=4, batch_timeout_micros=30_000_000)
    batcher = BatchScheduler(options, lambda *r: records.append(r))
    try:
        servable = load_servable("tf1", 1, tf1_model, False, batcher)
        inputs = [np.full((1, 3), i, np.float32) for i in range(4)]
        barrier = threading.Barrier(4)

        def call(x):
            barrier.wait(30)
            return predict_tf1(servable, x)[1]

        with futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(call, inputs))
    finally:
        batcher.stop(timeout=5)
    assert records == [("tf1", 4, 0, 4)]
    for i, outputs in enumerate(results):
        np.testing.assert_allclose(outputs["out"], [[6.0 * i + 0.5]])
