"""Logs, metrics and the per-request hook that feeds both.

Separate modules on purpose: gunicorn.conf.py imports `logs` before it sets
PROMETHEUS_MULTIPROC_DIR, and prometheus_client (imported by `metrics`) picks its storage at import
time, so this package imports nothing here.
"""
