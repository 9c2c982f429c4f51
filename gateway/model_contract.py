"""The serving signature every exported model carries: the one place its names are defined.

training/export.py writes models with these names; the gateway and the local model server read
them. A model is self-describing: input size/channels/dtype come from the `serving_default`
signature's input shape, labels and the decision threshold from the `model_info` signature.
"""

PREDICT_SIGNATURE = "serving_default"
INPUT_KEY = "image"  # uint8 [batch, size, size, channels]
PROBABILITIES_KEY = "probabilities"  # float32 [batch, n_classes], calibrated

INFO_SIGNATURE = "model_info"
INFO_INPUT_KEY = "batch"  # int32 [batch]; any values, one row of info comes back per element
LABELS_KEY = "labels"  # string [batch, n_classes]
THRESHOLD_KEY = (
    "threshold"  # float32 [batch]; probability of the positive class at/above which positive
)
POSITIVE_INDEX_KEY = "positive_index"  # int32 [batch]; -1 for tasks without a positive class

TASKS = ("brain-stroke", "brain-tumor", "spine-fracture")
