"""Tests: the contract lane (make test-contract)."""
