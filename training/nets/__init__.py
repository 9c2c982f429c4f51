"""The networks: candidate architectures (architectures.py), EfficientNet-Lite with its ImageNet
weights (efficientnet_lite.py, read by torch_checkpoint.py), project checkpoints (checkpoints.py)
and the in-graph out-of-domain score (ood.py)."""
