"""Golden answers: the version each task must answer with and its probabilities on the smoke's
inputs, read from model-server/models/<task>/<version>/smoke_golden.json (python -m
training.golden writes them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ct_contract.smoke_probe import GOLDEN_FILE
from ct_local.paths import MODELS_ROOT
from ct_local.smoke.client import SmokeError

DEFAULT_MODELS_DIR = MODELS_ROOT
GOLDEN_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Golden:
    """What each task must answer: its version and, per smoke input, the probabilities."""

    versions: dict[str, int]  # task -> expected version
    answers: dict[str, dict]  # task -> the golden file's content (None: shape checks only)
    tolerance: float = GOLDEN_TOLERANCE

    def check_version(self, task: str, version: object) -> None:
        if task in self.versions and version != self.versions[task]:
            raise SmokeError(
                f"{task}: answered by version {version!r}, expected {self.versions[task]} "
                "(stale image, or a models.config that serves another version?)"
            )

    def check_probabilities(self, task: str, what: str, probs: dict) -> None:
        golden = self.answers.get(task)
        if golden is None:
            return
        want = golden["predict"] if what == "predict" else golden["series"].get(what)
        if want is None:
            raise SmokeError(f"{task}: the golden file has no answer for {what!r}")
        if sorted(want) != sorted(probs):
            raise SmokeError(f"{task} {what}: labels {sorted(probs)}, golden {sorted(want)}")
        worst = max(abs(float(probs[k]) - float(want[k])) for k in want)
        if worst > self.tolerance:
            raise SmokeError(
                f"{task} {what}: probabilities {probs} differ from the golden {want} by "
                f"{worst:.2e} > {self.tolerance:g} (other model bytes or preprocessing?)"
            )

    def check_ood(self, task: str, what: str, score: object) -> None:
        """`score`: the answer's ood_score for input `what` ("predict" or a slice name)."""
        want = (self.answers.get(task) or {}).get("ood", {}).get(what)
        if want is None:
            return
        if not isinstance(score, int | float) or abs(float(score) - want) > self.tolerance * 10:
            raise SmokeError(f"{task} {what}: ood_score {score!r}, golden {want:.4f}")

    def ood_refusals(self, task: str, threshold: float) -> dict[str, bool]:
        """Input -> whether the model must refuse it as out of domain (empty: no OOD score)."""
        scores = (self.answers.get(task) or {}).get("ood", {})
        return {what: score > threshold for what, score in scores.items()}


NO_GOLDEN = Golden({}, {})


def newest_versions(models_dir: Path) -> dict[str, int]:
    """task -> its newest version folder holding a SavedModel (what TF Serving serves)."""
    versions: dict[str, int] = {}
    for task_dir in sorted(p for p in Path(models_dir).glob("*") if p.is_dir()):
        numbers = [
            int(v.name)
            for v in task_dir.iterdir()
            if v.name.isdigit() and (v / "saved_model.pb").is_file()
        ]
        if numbers:
            versions[task_dir.name] = max(numbers)
    return versions


def load_golden(
    models_dir: Path, expect: dict[str, int], tasks: list[str], tolerance: float
) -> Golden:
    """Expected versions (newest on disk unless `expect` says) and their golden answers."""
    versions = {**newest_versions(models_dir), **expect}
    answers = {}
    for task in tasks:
        if task not in versions:
            raise SmokeError(f"{task}: no version under {models_dir} (and no --expect-version)")
        answers[task] = _read_golden(Path(models_dir), task, versions[task])
    return Golden(versions, answers, tolerance)


def _read_golden(models_dir: Path, task: str, version: int) -> dict:
    path = models_dir / task / str(version) / GOLDEN_FILE
    try:
        answer = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SmokeError(
            f"{task}: no readable golden answer {path} ({err}); "
            f"write it with: python -m training.golden --task {task} --version {version}"
        ) from None
    if answer.get("version") != version or answer.get("task") != task:
        raise SmokeError(
            f"{path}: names {answer.get('task')} v{answer.get('version')}, not {task} v{version}"
        )
    return answer
