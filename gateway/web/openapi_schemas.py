"""The JSON Schemas of the gateway's bodies (OpenAPI 3.1 components; openapi.py uses them).

They follow what gateway/answers.py, gateway/models/domain.py, gateway/errors.py and
gateway/models/registry.py build. Objects stay open (more keys may come); the keys every answer
has are required.
"""

from __future__ import annotations

NUMBER, STRING, BOOLEAN, INTEGER = ({"type": t} for t in ("number", "string", "boolean", "integer"))
NULLABLE_NUMBER = {"type": ["number", "null"]}
NULLABLE_STRING = {"type": ["string", "null"]}
PROBABILITIES = {
    "type": "object",
    "description": "label -> probability, in the model's label order",
    "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: dict, optional: dict | None = None, description: str = "") -> dict:
    schema = {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }
    return {**schema, "description": description} if description else schema


ERROR = _object(
    {
        "error": _object(
            {"code": STRING, "message": STRING},
            {
                "ood_score": NUMBER,
                "threshold": NUMBER,
                "modality": STRING,
                "body_part": STRING,
                "out_of_domain_slices": INTEGER,
                "slices": INTEGER,
            },
            "`code` is machine-readable (docs/api.md's error table); out_of_domain adds the score "
            "and threshold, or the DICOM modality/body part that is not the model's",
        )
    }
)

DOMAIN_NOTE = _object(
    {"ood_score": NUMBER, "threshold": NUMBER, "in_domain": BOOLEAN},
    description="the model's out-of-distribution score of this image against its threshold",
)

FINDING = _object({"label": STRING, "probability": NUMBER})

PREDICTION = _object(
    {"model": STRING, "version": INTEGER, "label": STRING, "probabilities": PROBABILITIES},
    {
        "positive": BOOLEAN,
        "threshold": NUMBER,
        "finding": ref("Finding"),
        "modality": STRING,
        "validated": BOOLEAN,
        "validated_reason": STRING,
        "domain": ref("DomainNote"),
        "route": {"type": "string", "enum": ["stable", "canary"]},
        "heatmap_png": {"type": "string", "contentEncoding": "base64"},
        "heatmap_label": STRING,
    },
    "binary tasks add positive and threshold; `label` follows the threshold",
)

SEED_PREDICTION = {
    **PREDICTION,
    "description": "the predict answer; a binary task also carries its positive label, "
    'lower-cased, as a boolean key (e.g. "stroke")',
}

EXPLANATION = {**PREDICTION, "required": [*PREDICTION["required"], "heatmap_png", "heatmap_label"]}

SCAN = _object(
    {"label": STRING, "rule": STRING, "top_slice": INTEGER},
    {
        "probability": NUMBER,
        "positive": BOOLEAN,
        "threshold": NUMBER,
        "probabilities": PROBABILITIES,
        "finding": ref("Finding"),
        "out_of_domain_slices": INTEGER,
    },
    "the model's scan rule (probability, positive, threshold) or, without one, the mean "
    "probabilities",
)

SLICE = _object(
    {"index": INTEGER, "name": STRING, "label": STRING, "probabilities": PROBABILITIES},
    {"positive": BOOLEAN, "finding": ref("Finding"), "domain": ref("DomainNote")},
)

SERIES = _object(
    {
        "model": STRING,
        "version": INTEGER,
        "order": STRING,
        "scan": ref("Scan"),
        "slices": {"type": "array", "items": ref("Slice")},
    },
    {
        "modality": STRING,
        "validated": BOOLEAN,
        "validated_reason": STRING,
        "explained": {"type": "object"},
        "route": STRING,
    },
)

MODEL = _object(
    {
        "task": STRING,
        "version": INTEGER,
        "labels": {"type": "array", "items": STRING},
        "input_shape": {"type": "array", "items": INTEGER},
        "input_dtype": STRING,
        "threshold": NULLABLE_NUMBER,
        "positive_label": NULLABLE_STRING,
        "explainable": BOOLEAN,
        "endpoints": {"type": "object", "additionalProperties": STRING},
    },
    {
        key: {"type": ["object", "null"]}
        for key in ("window", "scan_rule", "label_groups", "validation", "domain")
    }
    | {
        "validated": {"type": ["boolean", "null"]},
        "validated_reason": NULLABLE_STRING,
        "intended_use": NULLABLE_STRING,
        "version_labels": {"type": "object"},
        "canary_share": NUMBER,
    },
)

MODELS = _object({"models": {"type": "array", "items": ref("Model")}})

STATUS_OK = _object({"status": {"const": "ok"}})

READY = _object({"status": {"const": "ready"}, "models": {"type": "object"}})

NOT_READY = {**ERROR, "required": ["error", "models"]}

IMAGE_JSON = {
    "type": "object",
    "description": "`url` (the gateway downloads it) or `image_b64`",
    "properties": {
        "url": {"type": "string", "format": "uri"},
        "image_b64": {"type": "string", "contentEncoding": "base64"},
    },
    "anyOf": [{"required": ["url"]}, {"required": ["image_b64"]}],
}


def multipart(field_names: tuple[str, ...], many: bool) -> dict:
    """A multipart body with the image in one of `field_names` (repeated for a series)."""
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    value = {"type": "array", "items": binary, "minItems": 1} if many else binary
    return {
        "type": "object",
        "properties": {name: value for name in field_names},
        "anyOf": [{"required": [name]} for name in field_names],
    }


COMPONENTS = {
    "Error": ERROR,
    "NotReady": NOT_READY,
    "DomainNote": DOMAIN_NOTE,
    "Finding": FINDING,
    "Prediction": PREDICTION,
    "SeedPrediction": SEED_PREDICTION,
    "Explanation": EXPLANATION,
    "Scan": SCAN,
    "Slice": SLICE,
    "Series": SERIES,
    "Model": MODEL,
    "Models": MODELS,
    "StatusOk": STATUS_OK,
    "Ready": READY,
    "ImageJson": IMAGE_JSON,
}
