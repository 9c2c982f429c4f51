"""Uploaded files -> model input: decoding (with the model's CT window), a series checked and put
in order (gateway/series.py), and the input tensor. The only gateway module that decodes."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np

from ct_contract.preprocess import (
    DecodeBudget,
    DecodeBudgetError,
    DecodedSlice,
    ImageDecodeError,
    ImageTooLargeError,
    MultiFrameError,
    UnsupportedTransferSyntaxError,
    decode_single,
    decode_slices,
    fit_to_input,
    to_model_input,
)
from gateway import series
from gateway.archive import Member
from gateway.config import Settings
from gateway.errors import PayloadTooLargeError, UnprocessableImageError, UnsupportedMediaTypeError
from gateway.models.registry import ModelInfo


def decode(
    data: bytes,
    info: ModelInfo,
    settings: Settings,
    max_frames: int | None,
    name: str | None,
    budget: DecodeBudget | None = None,
) -> list[DecodedSlice]:
    """Decode one file: all its frames (a series member, at most `max_frames`), or exactly one
    image (`max_frames` None), each shrunk to the model's input as soon as it is decoded, within
    `budget` (None: a request's own, settings.decode_budget_bytes). Decoding errors become
    413/415/422 naming the file."""
    where = f"file {name!r}: " if name else ""
    window = info.description.window
    limit = settings.max_image_pixels
    budget = budget or DecodeBudget(settings.decode_budget_bytes)
    shrink = partial(fit_to_input, size=info.input_size, channels=info.channels)
    try:
        if max_frames is None:
            return [decode_single(data, limit, window, budget, shrink)]
        return decode_slices(data, limit, window, max(1, max_frames), budget, shrink)
    except DecodeBudgetError as exc:
        raise PayloadTooLargeError(f"{where}{exc}", "memory_budget") from None
    except ImageTooLargeError as exc:
        raise PayloadTooLargeError(f"{where}{exc}", "image_too_large") from None
    except UnsupportedTransferSyntaxError as exc:
        raise UnsupportedMediaTypeError(f"{where}{exc}", "unsupported_transfer_syntax") from None
    except MultiFrameError as exc:
        raise UnprocessableImageError(str(exc), "multi_frame") from None
    except ImageDecodeError as exc:
        raise UnprocessableImageError(f"{where}{exc}") from None


def decode_series(
    files: Sequence[Member], info: ModelInfo, settings: Settings, max_slices: int
) -> tuple[list[series.NamedSlice], str]:
    """Every slice of every file (a multi-frame file names its frames), at most `max_slices`, all
    of one series, in anatomical order; with the name of the ordering rule."""
    budget = DecodeBudget(settings.decode_budget_bytes)  # one for the whole series
    slices: list[series.NamedSlice] = []
    for member in files:
        decoded = decode(member.data, info, settings, max_slices - len(slices), member.name, budget)
        many = len(decoded) > 1
        for d in decoded:
            name = f"{member.name}#{d.meta.frame}" if many else member.name
            slices.append(series.NamedSlice(name, d))
        if len(slices) >= max_slices and member is not files[-1]:
            raise PayloadTooLargeError(
                f"the series has more than the {max_slices} slices allowed", "too_many_slices"
            )
    series.check_one_series(slices)
    return series.order(slices)


def model_pixels(decoded: DecodedSlice, info: ModelInfo) -> np.ndarray:
    pixels = to_model_input(decoded.image, info.input_size, info.channels)
    return pixels.astype(info.input_dtype, copy=False)
