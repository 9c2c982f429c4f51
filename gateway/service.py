"""The gateway's work behind the routes: predict, list models, readiness."""

from __future__ import annotations

import numpy as np

from gateway import model_contract as mc
from gateway import tfs_api_pb2 as pb
from gateway.config import Settings
from gateway.errors import (
    ApiError,
    BadGatewayError,
    NotFoundError,
    PayloadTooLargeError,
    UnprocessableImageError,
)
from gateway.model_registry import ModelContractError, ModelInfo, ModelRegistry
from gateway.preprocess import ImageDecodeError, ImageTooLargeError, load_model_input
from gateway.tensors import TensorError, make_ndarray
from gateway.tfs_client import TfsClient


class Gateway:
    def __init__(self, settings: Settings, client: TfsClient | None = None) -> None:
        self.settings = settings
        self.client = client or TfsClient(settings)
        self.registry = ModelRegistry(self.client, settings.metadata_ttl_s)

    def check_task(self, task: str) -> None:
        if task not in self.settings.models:
            raise NotFoundError(
                f"unknown model {task!r}; served: {', '.join(self.settings.models)}",
                "unknown_model",
            )

    def predict(self, task: str, image: bytes) -> dict:
        self.check_task(task)
        info = self.registry.get(task)
        pixels = self._pixels(image, info)
        try:
            response = self.client.predict(
                task, {mc.INPUT_KEY: pixels[np.newaxis]}, mc.PREDICT_SIGNATURE
            )
        except BadGatewayError as error:
            if error.code == "model_rejected":  # maybe a new version with another input shape
                self.registry.invalidate(task)
            raise
        version = int(response.model_spec.version.value)
        if version and version != info.version:
            info = self.registry.for_version(task, version)
        return prediction_body(info, _probabilities(response, info))

    def _pixels(self, image: bytes, info: ModelInfo) -> np.ndarray:
        try:
            pixels = load_model_input(
                image, info.input_size, info.channels, self.settings.max_image_pixels
            )
        except ImageTooLargeError as exc:
            raise PayloadTooLargeError(str(exc), "image_too_large") from None
        except ImageDecodeError as exc:
            raise UnprocessableImageError(str(exc)) from None
        return pixels.astype(info.input_dtype, copy=False)

    def models(self) -> list[dict]:
        return [self.registry.get(task).to_dict() for task in self.settings.models]

    def model(self, task: str) -> dict:
        self.check_task(task)
        return self.registry.get(task).to_dict()

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


def _probabilities(response: pb.PredictResponse, info: ModelInfo) -> np.ndarray:
    if mc.PROBABILITIES_KEY not in response.outputs:
        raise ModelContractError(f"Predict response has no {mc.PROBABILITIES_KEY!r} output")
    try:
        probs = make_ndarray(response.outputs[mc.PROBABILITIES_KEY]).astype(np.float64)
    except TensorError as exc:
        raise ModelContractError(f"bad {mc.PROBABILITIES_KEY!r} output: {exc}") from None
    if probs.shape != (1, len(info.labels)) or not np.all(np.isfinite(probs)):
        raise ModelContractError(
            f"{mc.PROBABILITIES_KEY!r} has shape {probs.shape} (or non-finite values), "
            f"expected [1, {len(info.labels)}]"
        )
    return probs[0]


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
    return body
