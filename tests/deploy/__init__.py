"""Tests: the deploy lane (make test-deploy)."""
