"""Refusing what a model was not made for (ct_contract/signatures.py INFO_DOMAIN).

Two checks: a DICOM object's Modality (and BodyPartExamined, where given) against the domain the
model declares, before anything is scored; and the model's own out-of-distribution score of each
image against the threshold it carries. Out of domain answers 422 `out_of_domain`, with the score
where there is one; no verdict is given on such an image. In a series, out-of-domain slices are
reported and left out of the scan rule, and a series mostly out of domain is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ct_contract import signatures as mc
from ct_contract.slices import SliceMeta
from gateway.errors import ApiError
from gateway.models.registry import ModelContractError, ModelInfo
from gateway.tfs import tfs_api_pb2 as pb
from gateway.tfs.tensors import TensorError, make_ndarray

MIN_IN_DOMAIN_SHARE = 0.5  # a series needs at least this share of in-domain slices


class OutOfDomainError(ApiError):
    """422 out_of_domain; `details` (the score, the threshold) join the error object."""

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(422, "out_of_domain", message)
        self.details = details

    def to_dict(self) -> dict:
        body = super().to_dict()
        body["error"].update(self.details)
        return body


def check_meta(info: ModelInfo, metas: Sequence[SliceMeta]) -> None:
    """422 when a DICOM object's Modality or BodyPartExamined contradicts the model's domain."""
    domain = info.description.domain
    if domain is None:
        return
    for meta in metas:
        if meta.modality and domain.modalities and meta.modality.upper() not in domain.modalities:
            raise OutOfDomainError(
                f"{info.task} judges {'/'.join(domain.modalities)} images, not {meta.modality}",
                modality=meta.modality,
            )
        if meta.body_part and domain.body_parts and meta.body_part.upper() not in domain.body_parts:
            raise OutOfDomainError(
                f"{info.task} judges {domain.input or 'its own body part'}, not body part "
                f"{meta.body_part}",
                body_part=meta.body_part,
            )


def scores(response: pb.PredictResponse, info: ModelInfo, batch: int) -> np.ndarray | None:
    """The per-image ood_score of a model with an OOD threshold (else None)."""
    domain = info.description.domain
    if domain is None or domain.ood_threshold is None:
        return None
    if mc.OOD_SCORE_KEY not in response.outputs:
        raise ModelContractError(f"the model declares an OOD threshold but no {mc.OOD_SCORE_KEY!r}")
    try:
        values = make_ndarray(response.outputs[mc.OOD_SCORE_KEY]).astype(np.float64).reshape(-1)
    except TensorError as exc:
        raise ModelContractError(f"bad {mc.OOD_SCORE_KEY!r} output: {exc}") from None
    if values.shape != (batch,) or not np.all(np.isfinite(values)):
        raise ModelContractError(f"{mc.OOD_SCORE_KEY!r} has shape {values.shape}, need [{batch}]")
    return values


def note(info: ModelInfo, score: float) -> dict:
    """{"domain": {...}}: an answer's score, threshold and whether the image is in domain."""
    threshold = info.description.domain.ood_threshold
    return {"domain": {"ood_score": score, "threshold": threshold, "in_domain": score <= threshold}}


def refuse_if_out(info: ModelInfo, score: float | None) -> None:
    if score is None:
        return
    threshold = info.description.domain.ood_threshold
    if score > threshold:
        raise OutOfDomainError(
            f"this image does not look like what {info.task} was trained on "
            f"({info.description.domain.input or 'its domain'}): out-of-distribution score "
            f"{score:.2f} above {threshold:.2f}",
            ood_score=score,
            threshold=threshold,
        )


def refuse_series_if_mostly_out(info: ModelInfo, values: np.ndarray | None) -> np.ndarray | None:
    """The in-domain mask of a series' slices; 422 when too few slices are in domain."""
    if values is None:
        return None
    threshold = info.description.domain.ood_threshold
    inside = values <= threshold
    if inside.mean() < MIN_IN_DOMAIN_SHARE:
        raise OutOfDomainError(
            f"{int((~inside).sum())} of {len(values)} slices do not look like what {info.task} "
            f"was trained on ({info.description.domain.input or 'its domain'}); no scan verdict",
            out_of_domain_slices=int((~inside).sum()),
            slices=len(values),
            threshold=threshold,
        )
    return inside
