"""Tests: the training lane (make test-training)."""
