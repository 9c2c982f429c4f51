"""Unit tests of the stand-in's config reading, version policies, registry and flags (no TF)."""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc
import pytest

from ct_standin.__main__ import parse_args
from ct_standin.config import (
    ConfigError,
    ModelConfig,
    VersionPolicy,
    list_versions,
    load_models,
    render_config,
)
from ct_standin.errors import ServingError
from ct_standin.registry import AVAILABLE, END, LOADING, Registry
from tests.fixtures.common import REPO

COMMITTED_CONFIG = REPO / "model-server" / "models.config"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def config_text(*entries: str) -> str:
    return "model_config_list {\n" + "".join(f"config {{ {e} }}\n" for e in entries) + "}\n"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (VersionPolicy(), {7}),
        (VersionPolicy("latest", num_versions=2), {3, 7}),
        (VersionPolicy("all"), {1, 3, 7}),
        (VersionPolicy("specific", versions=frozenset({1, 5})), {1}),
    ],
)
def test_version_policy_select(policy, expected):
    assert policy.select([3, 1, 7]) == expected


def test_load_models_resolves_paths_and_policies(tmp_path):
    (tmp_path / "sub").mkdir()
    config = write(
        tmp_path / "sub" / "models.config",
        config_text(
            'name: "a" base_path: "models/a" model_platform: "tensorflow"',
            'name: "b" base_path: "/abs/b" model_version_policy { all {} }',
            'name: "c" base_path: "c" model_version_policy { specific { versions: 2 versions: 4 } }'
            ' version_labels { key: "stable" value: 2 }',
            'name: "d" base_path: "d" model_version_policy { latest { num_versions: 3 } }',
        ),
    )
    a, b, c, d = load_models(config)
    assert a.base_path == tmp_path / "sub" / "models" / "a"
    assert a.policy == VersionPolicy("latest", num_versions=1)  # TF Serving's default
    assert b.base_path == Path("/abs/b") and b.policy.kind == "all"
    assert c.policy == VersionPolicy("specific", versions=frozenset({2, 4}))
    assert c.version_labels == {"stable": 2}
    assert d.policy.num_versions == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model_config_list { config { name: ", "not a valid ModelServerConfig"),
        ('custom_model_config { type_url: "x" }', "only model_config_list"),
        (config_text('name: "a"'), "needs a name and a base_path"),
        (config_text('name: "a" base_path: "a" model_platform: "onnx"'), "unsupported"),
        (config_text('name: "a" base_path: "a"', 'name: "a" base_path: "b"'), "duplicate"),
        (config_text('name: "a" base_path: "a" model_version_policy { specific {} }'), "specific"),
    ],
)
def test_bad_configs_get_clear_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_models(write(tmp_path / "models.config", text))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_models(tmp_path / "absent.config")


def test_render_maps_the_image_models_root(tmp_path):
    config = write(
        tmp_path / "models.config",
        config_text(
            'name: "a" base_path: "/models/a"',
            'name: "b" base_path: "/modelsx/b"',
            'name: "c" base_path: "rel/c"',
        ),
    )
    rendered = write(
        tmp_path / "rendered.config", render_config(config, {"/models": tmp_path / "m"})
    )
    assert [m.base_path for m in load_models(rendered)] == [
        tmp_path / "m" / "a",
        Path("/modelsx/b"),
        tmp_path / "rel" / "c",
    ]


def test_committed_config_renders_onto_model_server_models(tmp_path):
    models_root = REPO / "model-server" / "models"
    rendered = write(
        tmp_path / "r.config", render_config(COMMITTED_CONFIG, {"/models": models_root})
    )
    models = load_models(rendered)
    assert models, "the committed models.config lists no models"
    for model in models:
        assert model.base_path == models_root / model.name


def test_list_versions_only_counts_integer_folders_with_a_saved_model(tmp_path):
    for name in ("1", "3", "10", "abc", "4"):
        (tmp_path / name).mkdir()
    for name in ("1", "3", "10", "abc"):
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    (tmp_path / "5").write_text("a file, not a version")
    assert list_versions(tmp_path) == [1, 3, 10]  # 4 is still being copied
    assert list_versions(tmp_path / "absent") == []


class FakeServable:
    def __init__(self, version: int):
        self.version = version


def registry_over(tmp_path: Path, versions, policy=None, fail=(), labels=None):
    root = tmp_path / "m"
    for version in versions:
        (root / str(version)).mkdir(parents=True)
        (root / str(version) / "saved_model.pb").write_bytes(b"")

    def loader(name, version, path):
        if version in fail:
            raise RuntimeError("broken model")
        return FakeServable(version)

    model = ModelConfig("m", root, policy or VersionPolicy(), labels or {})
    return Registry([model], loader), root


def code_of(call, *args) -> grpc.StatusCode:
    with pytest.raises(ServingError) as caught:
        call(*args)
    return caught.value.code


def test_registry_versions_are_unavailable_while_loading_then_served(tmp_path):
    registry, _ = registry_over(tmp_path, [1, 2], VersionPolicy("all"))
    pending = registry.plan()
    assert sorted(pending) == [("m", 1), ("m", 2)]
    assert [s.state for _, s in registry.status("m")] == [LOADING, LOADING]
    assert code_of(registry.resolve, "m") == grpc.StatusCode.UNAVAILABLE
    registry.load(pending)
    assert registry.resolve("m")[0] == 2
    assert registry.resolve("m", 1)[0] == 1
    assert code_of(registry.resolve, "m", 9) == grpc.StatusCode.NOT_FOUND
    assert code_of(registry.resolve, "other") == grpc.StatusCode.NOT_FOUND
    assert code_of(registry.status, "m", 9) == grpc.StatusCode.NOT_FOUND


def test_registry_follows_disk_and_keeps_serving_when_a_new_version_fails(tmp_path):
    registry, root = registry_over(tmp_path, [1], fail={3})
    registry.sync()
    assert registry.available_versions() == {"m": [1]}
    (root / "2").mkdir()
    (root / "2" / "saved_model.pb").write_bytes(b"")
    registry.sync()
    assert dict((v, s.state) for v, s in registry.status("m")) == {2: AVAILABLE, 1: END}
    (root / "3").mkdir()
    (root / "3" / "saved_model.pb").write_bytes(b"")
    registry.sync()
    registry.sync()  # a failed version is not retried on every scan
    states = dict(registry.status("m"))
    assert states[3].state == END and "broken model" in states[3].error
    assert registry.resolve("m")[0] == 2  # still served: the newer version failed


def test_registry_version_labels(tmp_path):
    registry, _ = registry_over(tmp_path, [1, 2], VersionPolicy("all"), labels={"stable": 1})
    registry.sync()
    assert registry.resolve("m", label="stable")[0] == 1
    assert code_of(registry.resolve, "m", None, "canary") == grpc.StatusCode.INVALID_ARGUMENT


def test_standin_flags_match_tensorflow_model_server(tmp_path):
    args = parse_args(
        [
            "--port=9000",
            "--rest_api_port=9001",
            f"--model_config_file={tmp_path}/m.config",
            "--file_system_poll_wait_seconds=5",
            "--enable_batching",
            "--grpc_channel_arguments=grpc.max_connection_age_ms=30000,grpc.x=y",
            "--enable_model_warmup=false",
        ]
    )
    assert (args.port, args.rest_api_port, args.file_system_poll_wait_seconds) == (9000, 9001, 5)
    assert args.grpc_channel_arguments == [("grpc.max_connection_age_ms", 30000), ("grpc.x", "y")]
    assert args.enable_batching is True and args.enable_model_warmup is False


def test_tensor_content_is_off_unless_asked_as_in_tensorflow_model_server():
    assert parse_args(["--model_config_file=x"]).enable_serialization_as_tensor_content is False
    for flag in (
        "--enable_serialization_as_tensor_content",
        "--enable_serialization_as_tensor_content=true",
    ):
        assert parse_args(["--model_config_file=x", flag]).enable_serialization_as_tensor_content


@pytest.mark.parametrize(
    "argv", [[], ["--model_config_file=x", "--enable_model_warmup=maybe"], ["--bogus=1"]]
)
def test_bad_flags_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        parse_args(argv)
    assert caught.value.code == 2
    assert "error" in capsys.readouterr().err


def test_ports_are_tf_servings():
    from ct_standin.config import GRPC_PORT, REST_PORT

    assert (GRPC_PORT, REST_PORT) == (8500, 8501)
    assert parse_args(["--model_config_file=x"]).port == GRPC_PORT


def test_channel_argument_needs_key_and_value():
    from ct_standin.__main__ import _channel_args

    with pytest.raises(argparse.ArgumentTypeError):
        _channel_args("grpc.max_connection_age_ms")
