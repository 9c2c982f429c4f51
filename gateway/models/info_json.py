"""What a model says beyond labels and threshold: its `info_json` (ct_contract.signatures).

Parsed strictly, because the gateway acts on it (the CT window shapes the pixels, the scan rule
decides a verdict): a malformed description makes the model unusable (502), never half-applied.
Versions exported before info_json existed describe nothing: `Description()`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ct_contract import scan_rule
from ct_contract import signatures as mc
from ct_contract.dicom import Window

MAX_INFO_JSON_BYTES = 64 * 1024


class DescriptionError(ValueError):
    """info_json is not what ct_contract/signatures.py describes."""


@dataclass(frozen=True)
class ScanRule:
    aggregation: str
    top_fraction: float
    threshold: float
    description: str

    def score(self, slice_scores) -> float:
        return scan_rule.AGGREGATIONS[self.aggregation](slice_scores, self.top_fraction)

    def to_dict(self) -> dict:
        return {
            "aggregation": self.aggregation,
            "top_fraction": self.top_fraction,
            "threshold": self.threshold,
            "description": self.description,
        }


@dataclass(frozen=True)
class Domain:
    """What the model is for (ct_contract/signatures.py INFO_DOMAIN)."""

    modalities: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()
    input: str | None = None
    ood_threshold: float | None = None  # above it an image's ood_score is out of domain
    ood_score: str | None = None  # what the score measures
    in_domain_acceptance: float | None = None

    def to_dict(self) -> dict:
        ood = None
        if self.ood_threshold is not None:
            ood = {"threshold": self.ood_threshold, "score": self.ood_score}
            ood["in_domain_acceptance"] = self.in_domain_acceptance
        return {
            "modalities": list(self.modalities),
            "body_parts": list(self.body_parts),
            "input": self.input,
            "ood": ood,
        }


@dataclass(frozen=True)
class Description:
    window: Window | None = None
    window_name: str | None = None
    scan_rule: ScanRule | None = None
    label_groups: tuple[tuple[str, tuple[str, ...]], ...] | None = None
    validation: dict | None = None
    validated: bool | None = None
    validated_reason: str | None = None
    intended_use: str | None = None
    domain: Domain | None = None

    def to_dict(self) -> dict:
        window = None
        if self.window is not None:
            window = {"center": self.window.center, "width": self.window.width}
            window["name"] = self.window_name
        return {
            "window": window,
            "scan_rule": self.scan_rule.to_dict() if self.scan_rule else None,
            "label_groups": (
                {name: list(labels) for name, labels in self.label_groups}
                if self.label_groups
                else None
            ),
            "validation": self.validation,
            "validated": self.validated,
            "validated_reason": self.validated_reason,
            "intended_use": self.intended_use,
            "domain": self.domain.to_dict() if self.domain else None,
        }


def parse(text: str | bytes | None, labels: tuple[str, ...], binary: bool) -> Description:
    """The Description in `text` (None or empty: an old model that describes nothing)."""
    if text is None or len(text) == 0:
        return Description()
    if len(text) > MAX_INFO_JSON_BYTES:
        raise DescriptionError(f"info_json is over {MAX_INFO_JSON_BYTES} bytes")
    try:
        body = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DescriptionError(f"info_json is not JSON: {type(exc).__name__}") from None
    if not isinstance(body, dict):
        raise DescriptionError("info_json is not a JSON object")
    window, window_name = _window(body.get(mc.INFO_WINDOW))
    return Description(
        window=window,
        window_name=window_name,
        scan_rule=_scan_rule(body.get(mc.INFO_SCAN_RULE), binary),
        label_groups=_groups(body.get(mc.INFO_LABEL_GROUPS), labels),
        validation=_optional(body, mc.INFO_VALIDATION, dict),
        validated=_optional(body, mc.INFO_VALIDATED, bool),
        validated_reason=_optional(body, mc.INFO_VALIDATED_REASON, str),
        intended_use=_optional(body, mc.INFO_INTENDED_USE, str),
        domain=_domain(body.get(mc.INFO_DOMAIN)),
    )


def _optional(body: dict, key: str, kind: type):
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise DescriptionError(f"info_json {key!r} must be a {kind.__name__}")
    return value


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DescriptionError(f"info_json {what} must be a finite number")
    return float(value)


def _window(value: object) -> tuple[Window | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise DescriptionError("info_json window must be an object or null")
    center = _number(value.get("center"), "window.center")
    width = _number(value.get("width"), "window.width")
    if width <= 0:
        raise DescriptionError("info_json window.width must be > 0")
    name = value.get("name")
    return Window(center, width), name if isinstance(name, str) else None


def _scan_rule(value: object, binary: bool) -> ScanRule | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not binary:
        raise DescriptionError("info_json scan_rule must be an object, on a two-class model")
    aggregation = value.get("aggregation")
    if aggregation not in scan_rule.AGGREGATIONS:
        raise DescriptionError(f"info_json scan_rule.aggregation {aggregation!r} is unknown")
    fraction = _number(value.get("top_fraction"), "scan_rule.top_fraction")
    threshold = _number(value.get("threshold"), "scan_rule.threshold")
    if not 0 < fraction <= 1 or not 0 <= threshold <= 1:
        raise DescriptionError("info_json scan_rule needs top_fraction in (0, 1], threshold [0, 1]")
    description = value.get("description")
    if not isinstance(description, str) or not description:
        description = scan_rule.describe(fraction)
    return ScanRule(aggregation, fraction, threshold, description)


def _groups(value: object, labels: tuple[str, ...]):
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise DescriptionError("info_json label_groups must be a non-empty object")
    seen: list[str] = []
    groups = []
    for name, members in value.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise DescriptionError(f"info_json label group {name!r} must be a list of labels")
        groups.append((str(name), tuple(members)))
        seen += members
    if sorted(seen) != sorted(labels):
        raise DescriptionError(
            f"info_json label_groups must hold every label exactly once ({sorted(labels)})"
        )
    return tuple(groups)


def _codes(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise DescriptionError(f"info_json domain.{what} must be a list of DICOM codes")
    return tuple(v.upper() for v in value)


def _domain(value: object) -> Domain | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DescriptionError("info_json domain must be an object or null")
    text = value.get("input")
    ood = value.get("ood")
    threshold = score = acceptance = None
    if ood is not None:
        if not isinstance(ood, dict):
            raise DescriptionError("info_json domain.ood must be an object or null")
        threshold = _number(ood.get("threshold"), "domain.ood.threshold")
        score = ood.get("score") if isinstance(ood.get("score"), str) else None
        raw = ood.get("in_domain_acceptance")
        acceptance = None if raw is None else _number(raw, "domain.ood.in_domain_acceptance")
    return Domain(
        modalities=_codes(value.get("modalities", []), "modalities"),
        body_parts=_codes(value.get("body_parts", []), "body_parts"),
        input=text if isinstance(text, str) else None,
        ood_threshold=threshold,
        ood_score=score,
        in_domain_acceptance=acceptance,
    )
