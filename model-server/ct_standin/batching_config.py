"""Read TF Serving's --batching_parameters_file (text-format BatchingParameters) without TensorFlow.

tensorflow-serving-api ships no BatchingParameters class, so the message is declared here with the
field names of tensorflow_serving/servables/tensorflow/session_bundle_config.proto; text format
matches fields by name, so a file the real server reads parses the same way here.
Defaults are BasicBatchScheduler::Options', used by TF Serving for every field left unset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)

from ct_standin.config import ConfigError

_INT64 = ".google.protobuf.Int64Value"
_BOOL = ".google.protobuf.BoolValue"
_STRING = ".google.protobuf.StringValue"
_FIELDS = (  # (name, number, type name or scalar type, repeated)
    ("max_batch_size", 1, _INT64, False),
    ("batch_timeout_micros", 2, _INT64, False),
    ("max_enqueued_batches", 3, _INT64, False),
    ("num_batch_threads", 4, _INT64, False),
    ("thread_pool_name", 5, _STRING, False),
    ("allowed_batch_sizes", 6, descriptor_pb2.FieldDescriptorProto.TYPE_INT64, True),
    ("pad_variable_length_inputs", 7, descriptor_pb2.FieldDescriptorProto.TYPE_BOOL, False),
    ("enable_large_batch_splitting", 9, _BOOL, False),
    ("max_execution_batch_size", 10, _INT64, False),
)


def _message_class():
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    proto = descriptor_pb2.FileDescriptorProto(
        name="ct_standin/batching_parameters.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = proto.message_type.add(name="BatchingParameters")
    for name, number, kind, repeated in _FIELDS:
        entry = message.field.add(name=name, number=number)
        entry.label = entry.LABEL_REPEATED if repeated else entry.LABEL_OPTIONAL
        if isinstance(kind, str):
            entry.type, entry.type_name = entry.TYPE_MESSAGE, kind
        else:
            entry.type = kind
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
    )


BatchingParametersProto = _message_class()


@dataclass(frozen=True)
class BatchingOptions:
    """What the stand-in's batcher needs; defaults as TF Serving's BasicBatchScheduler."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    thread_pool_name: str = "batch_threads"

    def padded_size(self, rows: int) -> int:
        """RoundToLowestAllowedBatchSize: the smallest allowed size holding `rows`, else `rows`."""
        return next((size for size in self.allowed_batch_sizes if size >= rows), rows)


def parse_batching_parameters(text: str, source: str = "<batching>") -> BatchingOptions:
    proto = BatchingParametersProto()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as err:
        raise ConfigError(f"{source}: not a valid BatchingParameters: {err}") from err
    # TF Serving splits a request larger than max_batch_size only with this flag; the stand-in
    # does not implement splitting, so it refuses the config rather than behave differently.
    if proto.enable_large_batch_splitting.value:
        raise ConfigError(
            f"{source}: enable_large_batch_splitting is not supported by the stand-in"
        )
    if proto.HasField("max_execution_batch_size"):
        raise ConfigError(f"{source}: max_execution_batch_size needs large batch splitting")
    defaults = BatchingOptions()
    options = BatchingOptions(
        max_batch_size=_value(proto, "max_batch_size", defaults.max_batch_size),
        batch_timeout_micros=_value(proto, "batch_timeout_micros", defaults.batch_timeout_micros),
        max_enqueued_batches=_value(proto, "max_enqueued_batches", defaults.max_enqueued_batches),
        num_batch_threads=_value(proto, "num_batch_threads", defaults.num_batch_threads),
        allowed_batch_sizes=tuple(proto.allowed_batch_sizes),
        pad_variable_length_inputs=proto.pad_variable_length_inputs,
        thread_pool_name=_value(proto, "thread_pool_name", defaults.thread_pool_name),
    )
    _validate(options, source)
    return options


def _value(proto, name: str, default):
    return getattr(proto, name).value if proto.HasField(name) else default


def _validate(options: BatchingOptions, source: str) -> None:
    for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
        if getattr(options, name) < 1:
            raise ConfigError(f"{source}: {name} must be positive")
    if options.batch_timeout_micros < 0:
        raise ConfigError(f"{source}: batch_timeout_micros must be non-negative")
    sizes = options.allowed_batch_sizes
    if sizes:
        if sizes[0] < 1 or any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
            raise ConfigError(f"{source}: allowed_batch_sizes must be positive and increasing")
        if sizes[-1] != options.max_batch_size:  # TF Serving's own check and wording
            raise ConfigError(
                f"{source}: Last entry in allowed_batch_sizes must match max_batch_size; last "
                f"entry was {sizes[-1]}; expected {options.max_batch_size}"
            )


def load_batching_parameters(path: Path | None) -> BatchingOptions:
    """The options in `path`; TF Serving's defaults when no file is given."""
    if path is None:
        return BatchingOptions(thread_pool_name="model_server_batch_threads")
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"cannot read batching parameters file {path}: {err}") from err
    return parse_batching_parameters(text, str(path))
