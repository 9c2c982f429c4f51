"""The gateway's work behind the routes: predict, series, explain, list models, readiness."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ct_contract import signatures as mc
from ct_contract.preprocess import (
    DecodedSlice,
    ImageDecodeError,
    ImageTooLargeError,
    MultiFrameError,
    UnsupportedTransferSyntaxError,
    decode_single,
    decode_slices,
    to_model_input,
)
from gateway import heatmap, metrics, series
from gateway import tfs_api_pb2 as pb
from gateway.archive import Member
from gateway.canary import LabelResolver, Router
from gateway.config import Settings
from gateway.errors import (
    ApiError,
    BadGatewayError,
    BadRequestError,
    NotFoundError,
    PayloadTooLargeError,
    UnprocessableImageError,
    UnsupportedMediaTypeError,
)
from gateway.model_registry import ModelContractError, ModelInfo, ModelRegistry
from gateway.tensors import TensorError, make_ndarray
from gateway.tfs_client import TfsClient

MAX_FRAMES_SINGLE = (
    1024  # a multi-frame object sent to :predict is refused after decoding its header
)


class Gateway:
    def __init__(self, settings: Settings, client: TfsClient | None = None) -> None:
        self.settings = settings
        self.client = client or TfsClient(settings)
        self.registry = ModelRegistry(self.client, settings.metadata_ttl_s)
        self.router = Router(settings.canary_share or 0.0)
        self.labels = LabelResolver(self._label_version, settings.metadata_ttl_s)

    def _label_version(self, task: str, label: str) -> int:
        return int(self.client.metadata(task, label=label).model_spec.version.value)

    def _route(self, task: str, canary: bool | None) -> tuple[ModelInfo, int | None, str | None]:
        """The model info, version to ask for and route (stable/canary; None: no labels)."""
        version, route = None, None
        if self.settings.canary_share is not None:  # label routing on (CT_CANARY_SHARE set)
            version, route = self.labels.route(task, self.router.wants_canary(canary))
        if version is None:
            return self.registry.get(task), None, None
        return self.registry.for_version(task, version), version, route

    @staticmethod
    def _record(body: dict, route: str | None) -> dict:
        if route:
            body["route"] = route
        metrics.PREDICTIONS.labels(body["model"], str(body["version"]), route or "").inc()
        return body

    def check_task(self, task: str) -> None:
        if task not in self.settings.models:
            raise NotFoundError(
                f"unknown model {task!r}; served: {', '.join(self.settings.models)}",
                "unknown_model",
            )

    def predict(
        self, task: str, image: bytes, explain: bool = False, canary: bool | None = None
    ) -> dict:
        """One picture or single-frame DICOM object -> the answer (with a heatmap if `explain`).
        `canary`: force (True) or avoid (False) the canary version; None: CT_CANARY_SHARE."""
        self.check_task(task)
        info, version, route = self._route(task, canary)
        if explain and not info.explainable:
            raise _not_explainable(info)
        decoded = self._decode(image, info, max_frames=None, name=None)[0]
        pixels = self._pixels(decoded, info)
        signature = mc.EXPLAIN_SIGNATURE if explain else mc.PREDICT_SIGNATURE
        response, info = self._call(task, pixels[np.newaxis], signature, info, version)
        body = prediction_body(info, _probabilities(response, info, 1)[0])
        if decoded.meta.modality:
            body["modality"] = decoded.meta.modality
        if explain:
            body.update(_explanation(response, info, pixels, 0))
        return self._record(body, route)

    def predict_series(
        self,
        task: str,
        files: Sequence[Member],
        explain: str | None = None,
        canary: bool | None = None,
    ) -> dict:
        """The slices of one scan -> one scan verdict and every slice's answer, in order.

        `explain`: None, "top" (the slice that weighs most in the verdict) or a slice index."""
        self.check_task(task)
        info, version, route = self._route(task, canary)
        if explain is not None and not info.explainable:
            raise _not_explainable(info)
        ordered, rule = series.order(self._decode_series(files, info))
        pixels = np.stack([self._pixels(s.slice, info) for s in ordered])
        probs, info = self._predict_batched(task, pixels, info, version)
        body = series_body(info, ordered, rule, probs)
        if explain is not None:
            index = _explain_index(explain, body, len(ordered))
            response, info = self._call(
                task, pixels[index : index + 1], mc.EXPLAIN_SIGNATURE, info, info.version
            )
            body["explained"] = {"index": index, **_explanation(response, info, pixels[index], 0)}
        return self._record(body, route)

    def _decode_series(self, files: Sequence[Member], info: ModelInfo) -> list[series.NamedSlice]:
        limit = self.settings.max_series_slices
        slices: list[series.NamedSlice] = []
        for member in files:
            decoded = self._decode(member.data, info, limit - len(slices), member.name)
            many = len(decoded) > 1
            for d in decoded:
                name = f"{member.name}#{d.meta.frame}" if many else member.name
                slices.append(series.NamedSlice(name, d))
            if len(slices) >= limit and member is not files[-1]:
                raise PayloadTooLargeError(
                    f"the series has more than the {limit} slices allowed", "too_many_slices"
                )
        series.check_one_series(slices)
        return slices

    def _decode(
        self, data: bytes, info: ModelInfo, max_frames: int | None, name: str | None
    ) -> list[DecodedSlice]:
        """Decode one file: all its frames (a series member, at most `max_frames`), or exactly one
        image (`max_frames` None). Decoding errors become 413/415/422 naming the file."""
        where = f"file {name!r}: " if name else ""
        window = info.description.window
        limit = self.settings.max_image_pixels
        try:
            if max_frames is None:
                return [decode_single(data, limit, window)]
            return decode_slices(data, limit, window, max_frames=max(1, max_frames))
        except ImageTooLargeError as exc:
            raise PayloadTooLargeError(f"{where}{exc}", "image_too_large") from None
        except UnsupportedTransferSyntaxError as exc:
            raise UnsupportedMediaTypeError(
                f"{where}{exc}", "unsupported_transfer_syntax"
            ) from None
        except MultiFrameError as exc:
            raise UnprocessableImageError(str(exc), "multi_frame") from None
        except ImageDecodeError as exc:
            raise UnprocessableImageError(f"{where}{exc}") from None

    def _pixels(self, decoded: DecodedSlice, info: ModelInfo) -> np.ndarray:
        pixels = to_model_input(decoded.image, info.input_size, info.channels)
        return pixels.astype(info.input_dtype, copy=False)

    def _predict_batched(
        self, task: str, pixels: np.ndarray, info: ModelInfo, version: int | None = None
    ) -> tuple[np.ndarray, ModelInfo]:
        """Probabilities of every slice, in Predicts of at most max_batch_size images, all answered
        by one model version (`version`, else the first chunk's: later chunks ask for it)."""
        step = self.settings.max_batch_size
        chunks = []
        for start in range(0, len(pixels), step):
            batch = pixels[start : start + step]
            response, info = self._call(task, batch, mc.PREDICT_SIGNATURE, info, version)
            version = info.version
            chunks.append(_probabilities(response, info, len(batch)))
        return np.concatenate(chunks), info

    def _call(
        self, task: str, batch: np.ndarray, signature: str, info: ModelInfo, version: int | None
    ) -> tuple[pb.PredictResponse, ModelInfo]:
        """Predict on `signature`; the answer's ModelInfo is that of the version that answered."""
        try:
            response = self.client.predict(task, {mc.INPUT_KEY: batch}, signature, version)
        except BadGatewayError as error:
            if error.code == "model_rejected":  # maybe a new version with another input shape
                self.registry.invalidate(task)
            raise
        answered = int(response.model_spec.version.value)
        if answered and answered != info.version:
            info = self.registry.for_version(task, answered)
        return response, info

    def models(self) -> list[dict]:
        return [self.model(task) for task in self.settings.models]

    def model(self, task: str) -> dict:
        self.check_task(task)
        info = self.registry.get(task)
        verbs = ["predict", "predict_series"] + (["explain"] if info.explainable else [])
        endpoints = {verb: f"/v1/models/{task}:{verb}" for verb in verbs}
        labels = self.labels.versions(task) if self.settings.canary_share is not None else {}
        extra = {"version_labels": labels, "canary_share": self.router.share} if labels else {}
        return {**info.to_dict(), "endpoints": endpoints, **extra}

    def readiness(self) -> tuple[bool, dict[str, dict]]:
        """(ready, per-task state): ready when every model has an AVAILABLE, usable version."""
        states = {task: self._task_readiness(task) for task in self.settings.models}
        return all(s["ready"] for s in states.values()), states

    def _task_readiness(self, task: str) -> dict:
        try:
            status = self.client.status(task)
        except ApiError as error:
            return {"ready": False, "reason": error.message}
        available = sorted(
            v.version
            for v in status.model_version_status
            if v.state == pb.ModelVersionStatus.AVAILABLE
        )
        if not available:
            states = [
                f"v{v.version} {pb.ModelVersionStatus.State.Name(v.state)}"
                for v in status.model_version_status
            ]
            return {
                "ready": False,
                "reason": f"no AVAILABLE version ({', '.join(states) or 'none'})",
            }
        try:
            version = self.registry.get(task).version
        except ApiError as error:
            return {"ready": False, "reason": error.message, "available_versions": available}
        return {"ready": True, "version": version, "available_versions": available}


def _probabilities(response: pb.PredictResponse, info: ModelInfo, batch: int) -> np.ndarray:
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


def _explanation(response: pb.PredictResponse, info: ModelInfo, pixels: np.ndarray, row: int):
    heat = _output(response, mc.HEATMAP_KEY)
    cls = _output(response, mc.HEATMAP_CLASS_KEY).reshape(-1)
    if heat.ndim != 3 or heat.shape[0] <= row or cls.size <= row:
        raise ModelContractError(f"{mc.HEATMAP_KEY!r} has shape {heat.shape}, need [N, h, w]")
    label_index = int(cls[row])
    if not 0 <= label_index < len(info.labels):
        raise ModelContractError(f"{mc.HEATMAP_CLASS_KEY!r} {label_index} is not a label index")
    try:
        png = heatmap.overlay_png_b64(pixels, heat[row])
    except heatmap.HeatmapError as exc:
        raise ModelContractError(str(exc)) from None
    return {"heatmap_png": png, "heatmap_label": info.labels[label_index]}


def _not_explainable(info: ModelInfo) -> NotFoundError:
    return NotFoundError(
        f"model {info.task!r} version {info.version} has no {mc.EXPLAIN_SIGNATURE!r} signature",
        "not_explainable",
    )


def _explain_index(explain: str, body: dict, n: int) -> int:
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
    info: ModelInfo, slices: Sequence[series.NamedSlice], rule: str, probs: np.ndarray
) -> dict:
    """The series answer: the scan verdict by the model's own rule, then every slice in order."""
    body: dict = {"model": info.task, "version": info.version, "order": rule}
    modalities = {s.slice.meta.modality for s in slices if s.slice.meta.modality}
    if modalities:
        body["modality"] = ", ".join(sorted(modalities))
    body["scan"] = scan_verdict(info, probs)
    body.update(validation_note(info))
    body["slices"] = [
        {"index": k, "name": s.name, **_slice_answer(info, p)}
        for k, (s, p) in enumerate(zip(slices, probs, strict=True))
    ]
    return body


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
