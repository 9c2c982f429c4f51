"""The gateway's work behind the routes: predict, series, explain, list models, readiness.

Decoding lives in gateway/decoding.py, the answer bodies in gateway/answers.py, what the models
are (and whether they are ready) in gateway/models/registry.py; this class routes to a model version
and calls the server.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ct_contract import signatures as mc
from gateway import answers, decoding
from gateway.archive import Member
from gateway.config import Settings
from gateway.errors import BadGatewayError, NotFoundError
from gateway.models import domain
from gateway.models.canary import LabelResolver, Router
from gateway.models.registry import ModelInfo, ModelRegistry
from gateway.observability import metrics
from gateway.tfs import tfs_api_pb2 as pb
from gateway.tfs.client import TfsClient


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
        """404 unknown_model unless `task` is served (CT_MODELS); the app checks every URL that
        names a model (app.known_task), so the methods below take served tasks."""
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
        info, version, route = self._route(task, canary)
        if explain and not info.explainable:
            raise answers.not_explainable(info)
        decoded = decoding.decode(image, info, self.settings, max_frames=None, name=None)[0]
        domain.check_meta(info, [decoded.meta])
        pixels = decoding.model_pixels(decoded, info)
        signature = mc.EXPLAIN_SIGNATURE if explain else mc.PREDICT_SIGNATURE
        response, info = self._call(task, pixels[np.newaxis], signature, info, version)
        ood = domain.scores(response, info, 1)
        score = None if ood is None else float(ood[0])
        domain.refuse_if_out(info, score)
        body = answers.prediction_body(info, answers.probabilities(response, info, 1)[0])
        if score is not None:
            body.update(domain.note(info, score))
        if decoded.meta.modality:
            body["modality"] = decoded.meta.modality
        if explain:
            body.update(answers.explanation(response, info, pixels, 0))
        return self._record(body, route)

    def predict_series(
        self,
        task: str,
        files: Sequence[Member],
        max_slices: int,
        explain: str | None = None,
        canary: bool | None = None,
    ) -> dict:
        """The slices of one scan (at most `max_slices`, frames counted) -> one scan verdict and
        every slice's answer, in order.

        `explain`: None, "top" (the slice that weighs most in the verdict) or a slice index."""
        info, version, route = self._route(task, canary)
        if explain is not None and not info.explainable:
            raise answers.not_explainable(info)
        ordered, rule = decoding.decode_series(files, info, self.settings, max_slices)
        domain.check_meta(info, [s.slice.meta for s in ordered])
        pixels = np.stack([decoding.model_pixels(s.slice, info) for s in ordered])
        probs, info, ood = self._predict_batched(task, pixels, info, version)
        inside = domain.refuse_series_if_mostly_out(info, ood)
        body = answers.series_body(info, ordered, rule, probs, ood, inside)
        if explain is not None:
            index = answers.explain_index(explain, body, len(ordered))
            response, info = self._call(
                task, pixels[index : index + 1], mc.EXPLAIN_SIGNATURE, info, info.version
            )
            explained = answers.explanation(response, info, pixels[index], 0)
            body["explained"] = {"index": index, **explained}
        return self._record(body, route)

    def _predict_batched(
        self, task: str, pixels: np.ndarray, info: ModelInfo, version: int | None = None
    ) -> tuple[np.ndarray, ModelInfo, np.ndarray | None]:
        """Probabilities (and ood scores, where the model has them) of every slice, in Predicts
        of at most max_batch_size images, all answered by one model version (`version`, else the
        first chunk's: later chunks ask for it)."""
        step = self.settings.max_batch_size
        chunks, scores = [], []
        for start in range(0, len(pixels), step):
            batch = pixels[start : start + step]
            response, info = self._call(task, batch, mc.PREDICT_SIGNATURE, info, version)
            version = info.version
            chunks.append(answers.probabilities(response, info, len(batch)))
            scores.append(domain.scores(response, info, len(batch)))
        ood = None if any(s is None for s in scores) else np.concatenate(scores)
        return np.concatenate(chunks), info, ood

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
        info = self.registry.get(task)
        verbs = ["predict", "predict_series"] + (["explain"] if info.explainable else [])
        endpoints = {verb: f"/v1/models/{task}:{verb}" for verb in verbs}
        labels = self.labels.versions(task) if self.settings.canary_share is not None else {}
        extra = {"version_labels": labels, "canary_share": self.router.share} if labels else {}
        return {**info.to_dict(), "endpoints": endpoints, **extra}

    def readiness(self) -> tuple[bool, dict[str, dict]]:
        """(ready, per-task state): ready when every model has an AVAILABLE, usable version."""
        states = self.registry.readiness(self.settings.models, self.settings.grpc_deadline_s)
        return all(s["ready"] for s in states.values()), states
