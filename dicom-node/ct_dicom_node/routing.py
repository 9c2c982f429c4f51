"""Which task a series goes to: the first rule whose Modality, BodyPartExamined and
SeriesDescription/ProtocolName patterns all match the series' first instance."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom import Dataset


class RuleError(ValueError):
    """A rule in the configuration is malformed."""


@dataclass(frozen=True)
class Rule:
    """One routing rule. An unset field matches anything; set fields must all match.

    modalities: exact Modality values (case-insensitive). body_part: a regex that must match the
    whole BodyPartExamined (case-insensitive). description: a regex searched (case-insensitive)
    in SeriesDescription and in ProtocolName; either matching is enough."""

    task: str
    modalities: frozenset[str] = frozenset()
    body_part: re.Pattern | None = None
    description: re.Pattern | None = None

    def matches(self, ds: Dataset) -> bool:
        modality = str(ds.get("Modality", "") or "").upper()
        if self.modalities and modality not in self.modalities:
            return False
        part = str(ds.get("BodyPartExamined", "") or "")
        if self.body_part is not None and not self.body_part.fullmatch(part):
            return False
        if self.description is None:
            return True
        texts = (ds.get("SeriesDescription", ""), ds.get("ProtocolName", ""))
        return any(self.description.search(str(t or "")) for t in texts)


def rule_from_dict(raw: dict) -> Rule:
    """A Rule from a config table: task, modality (a string or a list), body_part, description."""
    unknown = set(raw) - {"task", "modality", "body_part", "description"}
    if unknown:
        raise RuleError(f"unknown rule keys {sorted(unknown)}")
    task = raw.get("task")
    if not isinstance(task, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", task):
        raise RuleError(f"rule task must be a task name, not {task!r}")
    modality = raw.get("modality", [])
    modalities = [modality] if isinstance(modality, str) else list(modality)
    return Rule(
        task=task,
        modalities=frozenset(m.upper() for m in modalities),
        body_part=_pattern(raw.get("body_part")),
        description=_pattern(raw.get("description")),
    )


def _pattern(text: str | None) -> re.Pattern | None:
    if text is None:
        return None
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error as exc:
        raise RuleError(f"bad pattern {text!r}: {exc}") from None


def route(rules: Sequence[Rule], ds: Dataset) -> str | None:
    """The task of the first matching rule, or None (the series is ignored)."""
    return next((rule.task for rule in rules if rule.matches(ds)), None)
