"""A batch's tensors, as TF Serving's batching_util builds them: the task size, the merged inputs
(padded to common shapes and to an allowed batch size) and each task's rows of the outputs."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import numpy as np

from ct_standin.batching_config import BatchingOptions
from ct_standin.errors import ServingError

Arrays = dict[str, np.ndarray]
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def batch_rows(arguments: Mapping[str, np.ndarray]) -> int:
    """The task size: the common 0th dimension of every input (batching_util's rule)."""
    if not arguments:
        raise ServingError(INVALID, "Batching Run() must have at least one input tensor")
    if any(value.ndim == 0 for value in arguments.values()):
        raise ServingError(INVALID, "Batching Run() input tensors must have at least one dimension")
    sizes = {value.shape[0] for value in arguments.values()}
    if len(sizes) != 1:
        raise ServingError(
            INVALID, "Batching Run() input tensors must have equal 0th-dimension size"
        )
    return sizes.pop()


def merge_inputs(
    inputs: list[Arrays], rows: list[int], options: BatchingOptions
) -> tuple[Arrays, int]:
    """The tasks' inputs concatenated (task order) and the number of padding rows appended."""
    donor = next((i for i in reversed(range(len(rows))) if rows[i]), None)
    total = sum(rows)
    padding = options.padded_size(total) - total if donor is not None else 0
    merged = {}
    for name in inputs[0]:
        parts = [arguments[name] for arguments in inputs]
        if options.pad_variable_length_inputs:
            parts = pad_to_common_shape(parts)
        if padding:  # TF Serving pads with the first row of the last task
            parts.append(np.repeat(parts[donor][:1], padding, axis=0))
        merged[name] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    return merged, padding


def split_outputs(outputs: Mapping[str, np.ndarray], rows: list[int], padding: int) -> list[Arrays]:
    """Each task's rows of every output; the padding rows are dropped."""
    per_task: list[Arrays] = [{} for _ in rows]
    for name, value in outputs.items():
        value = np.asarray(value)
        if value.ndim == 0:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION, "Batched output tensor has 0 dimensions"
            )
        if value.shape[0] != sum(rows) + padding:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                "dimension sizes of the input tensors",
            )
        start = 0
        for index, count in enumerate(rows):
            per_task[index][name] = value[start : start + count]
            start += count
    return per_task


def pad_to_common_shape(parts: list[np.ndarray]) -> list[np.ndarray]:
    """batching_util's AddPadding: pad each non-batch dim at its end to the largest in the batch,
    with the tensor's own first element."""
    target = np.max([part.shape for part in parts], axis=0)
    padded = []
    for part in parts:
        widths = [(0, 0)] + [
            (0, int(t - s)) for t, s in zip(target[1:], part.shape[1:], strict=True)
        ]
        if not any(after for _, after in widths):
            padded.append(part)
            continue
        if part.size == 0:
            raise ServingError(INVALID, "Got empty tensor in batch of non-empty tensors.")
        padded.append(np.pad(part, widths, constant_values=part.flat[0]))
    return padded
