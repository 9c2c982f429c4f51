"""Tests: the integration lane (make test-integration)."""
