"""gunicorn settings for the gateway, derived from CT_* (gateway/config.py); `python -m gateway`.

Workers run uvicorn's event loop in front of a thread pool (gateway/server.py): requests mostly
wait on gRPC or a URL download, so threads overlap that waiting, and a request reaches a thread
only once it has fully arrived. gRPC channels are created lazily inside each worker, after the fork.
"""

import math
import os
import shutil
import tempfile
from pathlib import Path

from gateway.config import PROMETHEUS_MULTIPROC_ENV as MULTIPROC_ENV
from gateway.config import Settings
from gateway.observability import logs

_settings = Settings.from_env()

bind = f"0.0.0.0:{_settings.port}"
# uvicorn's event loop reads whole requests, then a thread pool of CT_THREADS runs the Flask app
# (gateway/server.py): a stalled client costs a socket, not a thread.
worker_class = "gateway.server.Worker"
workers = _settings.workers
proc_name = "ct-gateway"
# The app is imported once, in the master, and forked: workers are up at once and share its
# pages (Flask, gRPC, numpy, PIL) copy-on-write. Safe because nothing opens a gRPC channel at
# import (each worker opens its own on first use, tfs/client.py) and PROMETHEUS_MULTIPROC_DIR
# is set below, while this file loads, before gunicorn loads the app and prometheus_client.
preload_app = True
# gunicorn's runtime control socket lives at one path per user ($HOME/.gunicorn): two gateways on a
# machine would clash, and a pod's root filesystem is read-only. Nothing here needs it.
control_socket_disable = True

# The longest a request can legitimately take: a URL download plus three model-server calls
# (metadata, model_info, predict). In-flight requests get that long to finish on SIGTERM, so the
# Kubernetes terminationGracePeriodSeconds must be larger than graceful_timeout.
# On SIGTERM uvicorn stops listening at once (a new connection is refused, and may be retried
# elsewhere) and lets requests in flight finish within graceful_timeout.
_request_budget_s = _settings.url_timeout_s + 3 * _settings.grpc_deadline_s
graceful_timeout = math.ceil(_request_budget_s) + 1
timeout = max(30, graceful_timeout + 5)  # silent-worker kill; the event loop heartbeats
keepalive = 5

# Heartbeat files on tmpfs: a disk-backed /tmp can stall workers (and may be read-only in pods).
if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
    worker_tmp_dir = "/dev/shm"

accesslog = None  # per-request figures are in /metrics; errors are logged by the app
errorlog = "-"
loglevel = _settings.log_level.lower()
# Replaces gunicorn's logging config wholesale (its defaults are merged one key deep): JSON lines,
# and gunicorn.access silenced because a logconfig_dict would otherwise switch access logs on.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": logs.JsonFormatter}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"level": "WARNING", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {
            "handlers": ["console"],
            "level": _settings.log_level,
            "propagate": False,
        },
        "gunicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
    },
}

# Prometheus multiprocess mode: every worker writes its metrics under one directory, which the
# master creates before forking (and removes at exit) unless PROMETHEUS_MULTIPROC_DIR is given.
# The master must not import prometheus_client before this: it picks its storage at import time.
_own_metrics_dir = not os.environ.get(MULTIPROC_ENV)
if _own_metrics_dir:
    os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="ct-gateway-metrics-")


def on_starting(server) -> None:
    for stale in Path(os.environ[MULTIPROC_ENV]).glob("*.db"):
        stale.unlink()


def child_exit(server, worker) -> None:
    from gateway.observability.metrics import mark_process_dead

    mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if _own_metrics_dir:
        shutil.rmtree(os.environ[MULTIPROC_ENV], ignore_errors=True)
