"""Tests: the gateway lane (make test-gateway)."""
