"""The serving signatures every exported model carries: the one place their names are defined.

training/export/savedmodel.py writes models with these names; the gateway and the local model server
read them. A model is self-describing: input size/channels/dtype come from the `serving_default`
signature's input shape, labels and the decision threshold from the `model_info` signature, and
everything else it says about itself (CT window, scan rule, label groups, validation figures) from
`model_info`'s `info_json` output, a JSON object whose keys are the INFO_* names below.
"""

PREDICT_SIGNATURE = "serving_default"
INPUT_KEY = "image"  # uint8 [batch, size, size, channels]
PROBABILITIES_KEY = "probabilities"  # float32 [batch, n_classes], calibrated
OOD_SCORE_KEY = "ood_score"
"""float32 [batch]: how far each image lies from the training images (serving_default and
explain of models whose info_json domain has an "ood" threshold; above it: out of domain)."""

INFO_SIGNATURE = "model_info"
INFO_INPUT_KEY = "batch"  # int32 [batch]; any values, one row of info comes back per element
LABELS_KEY = "labels"  # string [batch, n_classes]
THRESHOLD_KEY = (
    "threshold"  # float32 [batch]; probability of the positive class at/above which positive
)
POSITIVE_INDEX_KEY = "positive_index"  # int32 [batch]; -1 for tasks without a positive class
INFO_JSON_KEY = "info_json"  # string [batch]; a JSON object (absent in versions before it existed)

# Keys of the info_json object. Every key is optional; absent means "the model does not say".
INFO_WINDOW = "window"
"""{"center": HU, "width": HU, "name": str}: the CT window DICOM Hounsfield units are mapped to
8 bits with. null: the model was trained on 8-bit pictures with no known window, so DICOM input
uses the file's own VOI window (WindowCenter/WindowWidth), else the image's full range."""
INFO_SCAN_RULE = "scan_rule"
"""{"aggregation": "top_fraction_mean", "top_fraction": float, "threshold": float,
"description": str}: how slice probabilities of the positive class become one score per scan,
and the validated threshold at/above which the scan is positive. null: no scan rule."""
INFO_LABEL_GROUPS = "label_groups"
"""{finding: [label, ...], ...}: labels that make one finding (every label in exactly one group)."""
INFO_VALIDATION = "validation"
"""Free-form figures the version was accepted on ({"how": str, ...numbers...})."""
INFO_VALIDATED = "validated"
"""bool: the validation figures reach the task's floor (training/tasks.py)."""
INFO_VALIDATED_REASON = "validated_reason"  # str: why (not) validated
INFO_INTENDED_USE = "intended_use"  # str: the model card's intended-use sentence
INFO_DOMAIN = "domain"
"""What the model was made for: {"modalities": ["CT", ...] (DICOM Modality values), "body_parts":
["HEAD", ...] (DICOM BodyPartExamined values), "input": str (in words), "ood": {"threshold":
float, "score": str (what OOD_SCORE_KEY measures), "in_domain_acceptance": float (share of
held-out in-domain images at or below the threshold)} or null}. A DICOM object whose Modality, or
BodyPartExamined where given, is not listed, and an image whose ood_score is above the threshold,
are out of domain: no verdict is given on them."""

SCAN_AGGREGATIONS = ("top_fraction_mean",)

EXPLAIN_SIGNATURE = "explain"
# Inputs: INPUT_KEY as in serving_default. Outputs: PROBABILITIES_KEY as in serving_default, and:
HEATMAP_KEY = "heatmap"  # float32 [batch, h, w] in [0, 1]: Grad-CAM over the input, coarse grid
HEATMAP_CLASS_KEY = "heatmap_class"  # int32 [batch]: the class index the heatmap explains
