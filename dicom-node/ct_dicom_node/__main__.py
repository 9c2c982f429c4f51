"""`python -m ct_dicom_node [CONFIG.toml]` (else $CT_DICOM_NODE_CONFIG): runs until SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import threading

from ct_dicom_node import config, logs
from ct_dicom_node.node import Node


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logs.configure(os.environ.get("CT_LOG_LEVEL", "INFO"))
    try:
        settings = config.load(argv[0] if argv else None)
    except config.ConfigError as exc:
        print(f"ct_dicom_node: {exc}", file=sys.stderr)
        return 2
    node = Node(settings).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
