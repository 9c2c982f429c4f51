"""JSON log lines, the gateway's shape (time, level, logger, message, then `extra=` fields).
Callers pass only identifier-free fields: spool keys, tasks, counts, error class names."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


QUIET_LIBRARIES = ("highdicom", "pynetdicom", "pydicom")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The DICOM libraries log UIDs and dataset contents (highdicom names every source instance at
    # INFO, pynetdicom dumps datasets at DEBUG): only their errors reach the log, so no
    # identifier does (tests/dicom_node/test_process.py reads a real log for them).
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
