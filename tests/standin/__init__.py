"""Tests: the standin lane (make test-standin)."""
