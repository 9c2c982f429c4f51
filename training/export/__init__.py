"""A trained model as a served SavedModel version: signatures, info_json, warmup and model card
(savedmodel.py, `python -m training.export` exports an untrained tiny model) and the in-graph
Grad-CAM `explain` signature (explain.py)."""
