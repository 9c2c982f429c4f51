"""The JSON answers: what a model's Predict response says, as the API's predict/series bodies.

An explanation's heatmap (float [h, w] in [0, 1], a coarse grid from the explain signature) is
resized to the model's input, coloured and alpha-blended over that input: the letterboxed pixels
the model saw, so a hot spot sits exactly where the model looked (a PNG, Pillow and numpy only).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ct_contract import signatures as mc
from gateway import series
from gateway.errors import BadRequestError, NotFoundError
from gateway.models import domain
from gateway.models.registry import ModelContractError, ModelInfo
from gateway.tfs import tfs_api_pb2 as pb
from gateway.tfs.tensors import TensorError, make_ndarray

MIN_SIDE = 256  # small model inputs are enlarged so a person can see the heatmap overlay
MAX_ALPHA = 0.6
# A perceptually ordered ramp (dark blue -> red -> yellow): (position, (r, g, b)).
_RAMP = (
    (0.0, (0, 0, 96)),
    (0.35, (64, 0, 160)),
    (0.6, (220, 40, 40)),
    (0.85, (255, 160, 0)),
    (1.0, (255, 255, 160)),
)


def probabilities(response: pb.PredictResponse, info: ModelInfo, batch: int) -> np.ndarray:
    probs = _output(response, mc.PROBABILITIES_KEY).astype(np.float64)
    if probs.shape != (batch, len(info.labels)) or not np.all(np.isfinite(probs)):
        raise ModelContractError(
            f"{mc.PROBABILITIES_KEY!r} has shape {probs.shape} (or non-finite values), "
            f"expected [{batch}, {len(info.labels)}]"
        )
    return probs


def _output(response: pb.PredictResponse, key: str) -> np.ndarray:
    if key not in response.outputs:
        raise ModelContractError(f"Predict response has no {key!r} output")
    try:
        return make_ndarray(response.outputs[key])
    except TensorError as exc:
        raise ModelContractError(f"bad {key!r} output: {exc}") from None


def explanation(response: pb.PredictResponse, info: ModelInfo, pixels: np.ndarray, row: int):
    heat = _output(response, mc.HEATMAP_KEY)
    cls = _output(response, mc.HEATMAP_CLASS_KEY).reshape(-1)
    if heat.ndim != 3 or heat.shape[0] <= row or cls.size <= row:
        raise ModelContractError(f"{mc.HEATMAP_KEY!r} has shape {heat.shape}, need [N, h, w]")
    label_index = int(cls[row])
    if not 0 <= label_index < len(info.labels):
        raise ModelContractError(f"{mc.HEATMAP_CLASS_KEY!r} {label_index} is not a label index")
    png = overlay_png_b64(pixels, heat[row])
    return {"heatmap_png": png, "heatmap_label": info.labels[label_index]}


def colourise(heat: np.ndarray) -> np.ndarray:
    """[h, w] in [0, 1] -> uint8 [h, w, 3] along the ramp."""
    positions = np.array([p for p, _ in _RAMP])
    colours = np.array([c for _, c in _RAMP], dtype=np.float64)
    channels = [np.interp(heat, positions, colours[:, k]) for k in range(3)]
    return np.clip(np.round(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


def overlay(pixels: np.ndarray, heat: np.ndarray) -> Image.Image:
    """The model input (uint8 [S, S, 1|3]) with `heat` blended over it, as an RGB image;
    ModelContractError unless `heat` is a finite 2-D map."""
    heat = np.asarray(heat, dtype=np.float64)
    if heat.ndim != 2 or heat.size == 0 or not np.all(np.isfinite(heat)):
        raise ModelContractError(f"heatmap must be a finite 2-D map, got shape {heat.shape}")
    heat = np.clip(heat, 0.0, 1.0)
    base = Image.fromarray(
        np.ascontiguousarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    )
    base = base.convert("RGB")
    side = max(MIN_SIDE, base.width)
    base = base.resize((side, side), Image.Resampling.BILINEAR)
    heat_img = Image.fromarray(np.round(heat * 255).astype(np.uint8), "L")
    heat_big = np.asarray(heat_img.resize((side, side), Image.Resampling.BILINEAR)) / 255.0
    alpha = (heat_big * MAX_ALPHA)[..., np.newaxis]
    blended = np.asarray(base, dtype=np.float64) * (1 - alpha) + colourise(heat_big) * alpha
    return Image.fromarray(np.clip(np.round(blended), 0, 255).astype(np.uint8), "RGB")


def overlay_png_b64(pixels: np.ndarray, heat: np.ndarray) -> str:
    """`overlay` encoded as a base64 PNG string (for JSON)."""
    buffer = io.BytesIO()
    overlay(pixels, heat).save(buffer, format="PNG", optimize=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def not_explainable(info: ModelInfo) -> NotFoundError:
    return NotFoundError(
        f"model {info.task!r} version {info.version} has no {mc.EXPLAIN_SIGNATURE!r} signature",
        "not_explainable",
    )


def explain_index(explain: str, body: dict, n: int) -> int:
    if explain == "top":
        return body["scan"]["top_slice"]
    try:
        index = int(explain)
    except ValueError:
        raise BadRequestError(
            f"explain must be 'top' or a slice index, not {explain[:20]!r}", "bad_explain"
        ) from None
    if not 0 <= index < n:
        raise BadRequestError(f"explain index {index} is not a slice (0..{n - 1})", "bad_explain")
    return index


def prediction_body(info: ModelInfo, probs: np.ndarray) -> dict:
    """The JSON answer. Binary tasks decide by threshold; `label` agrees with `positive`."""
    body = {
        "model": info.task,
        "version": info.version,
        "label": info.labels[int(np.argmax(probs))],
        "probabilities": {label: float(p) for label, p in zip(info.labels, probs, strict=True)},
    }
    if info.binary:
        positive = bool(probs[info.positive_index] >= info.threshold)
        others = np.delete(np.arange(len(probs)), info.positive_index)
        chosen = info.positive_index if positive else int(others[np.argmax(probs[others])])
        body.update(label=info.labels[chosen], positive=positive, threshold=info.threshold)
    body.update(finding_of(info, probs))
    body.update(validation_note(info))
    return body


def finding_of(info: ModelInfo, probs: np.ndarray) -> dict:
    """{"finding": {"label", "probability"}} for models with label groups (summed group
    probabilities; the most probable group), else {}."""
    groups = info.description.label_groups
    if not groups:
        return {}
    index = {label: k for k, label in enumerate(info.labels)}
    sums = [(name, float(sum(probs[index[m]] for m in members))) for name, members in groups]
    name, probability = max(sums, key=lambda item: item[1])
    return {"finding": {"label": name, "probability": probability}}


def validation_note(info: ModelInfo) -> dict:
    """Whether the version reached its task's validation floor, when the model says."""
    described = info.description
    if described.validated is None:
        return {}
    note: dict = {"validated": described.validated}
    if not described.validated:
        note["validated_reason"] = described.validated_reason or "below the task's floor"
    return note


def series_body(
    info: ModelInfo,
    slices: Sequence[series.NamedSlice],
    rule: str,
    probs: np.ndarray,
    ood: np.ndarray | None = None,
    inside: np.ndarray | None = None,
) -> dict:
    """The series answer: the scan verdict by the model's own rule over the in-domain slices
    (`inside`; all when None), then every slice in order, with its ood score where there is one."""
    body: dict = {"model": info.task, "version": info.version, "order": rule}
    modalities = {s.slice.meta.modality for s in slices if s.slice.meta.modality}
    if modalities:
        body["modality"] = ", ".join(sorted(modalities))
    kept = np.arange(len(probs)) if inside is None else np.flatnonzero(inside)
    verdict = scan_verdict(info, probs[kept])
    verdict["top_slice"] = int(kept[verdict["top_slice"]])
    if inside is not None:
        verdict["out_of_domain_slices"] = int(len(probs) - len(kept))
    body["scan"] = verdict
    body.update(validation_note(info))
    body["slices"] = [
        {"index": k, "name": s.name, **_slice_answer(info, p), **_domain_note(info, ood, k)}
        for k, (s, p) in enumerate(zip(slices, probs, strict=True))
    ]
    return body


def _domain_note(info: ModelInfo, ood: np.ndarray | None, k: int) -> dict:
    if ood is None:
        return {}
    return domain.note(info, float(ood[k]))


def _slice_answer(info: ModelInfo, probs: np.ndarray) -> dict:
    full = prediction_body(info, probs)
    keep = ("label", "probabilities", "positive", "finding")
    return {key: full[key] for key in keep if key in full}


def scan_verdict(info: ModelInfo, probs: np.ndarray) -> dict:
    """The model's scan rule when it has one; otherwise the mean probability of each label over
    the slices (no threshold is made up: the label is the most probable one)."""
    rule = info.description.scan_rule
    if rule is not None and info.binary:
        scores = probs[:, info.positive_index]
        score = rule.score(scores)
        positive = score >= rule.threshold
        others = [k for k in range(len(info.labels)) if k != info.positive_index]
        label = (
            info.positive_index if positive else others[int(np.argmax(probs[:, others].mean(0)))]
        )
        return {
            "label": info.labels[label],
            "probability": score,
            "positive": bool(positive),
            "threshold": rule.threshold,
            "rule": rule.description,
            "top_slice": int(np.argmax(scores)),
        }
    mean = probs.mean(axis=0)
    top = int(np.argmax(mean))
    verdict = {
        "label": info.labels[top],
        "probabilities": {label: float(p) for label, p in zip(info.labels, mean, strict=True)},
        "rule": "mean of the slice probabilities of each label (the model has no scan rule)",
        "top_slice": int(np.argmax(probs[:, top])),
    }
    verdict.update(finding_of(info, mean))
    return verdict


def seed_answer(body: dict, positive_label: str | None) -> dict:
    """The seed clients read {"stroke": true|false}: a binary default task's answer also carries
    its positive label, lower-cased, as a key (unless that would overwrite a key of the answer)."""
    key = positive_label.lower() if positive_label else None
    if "positive" in body and key and key not in body:
        return {**body, key: body["positive"]}
    return body
