"""Shared pieces of the dicom-node tests: a small CT series (the smoke's, of the test patient),
a node configuration, a fake gateway (HTTP) and a destination PACS (a pynetdicom SCP)."""

from __future__ import annotations

import base64
import email.parser
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    ComprehensiveSRStorage,
    SecondaryCaptureImageStorage,
    Verification,
)

from ct_dicom_node import config
from ct_local.smoke import dicom as smoke_dicom

PATIENT_NAME = "Testpatient^Secret"
PATIENT_ID = "PID-7781-SECRET"


def ct_series(n: int = 4, body_part: str = "HEAD", modality: str = "CT") -> list[Dataset]:
    """The smoke's series builder (ct_local.smoke.dicom.ct_series), of the test patient."""
    return smoke_dicom.ct_series(n, body_part, modality, patient=(PATIENT_NAME, PATIENT_ID))


def node_config(
    tmp_path: Path, gateway_url: str, dest_port: int = 1, **overrides
) -> config.NodeConfig:
    raw = {
        "ae_title": "CT_TRIAGE",
        "allowed_calling_aets": ["SENDER", "STORESCU"],
        "bind": "127.0.0.1",
        "port": 0,
        "http_port": 0,
        "spool_dir": str(tmp_path / "spool"),
        "quiet_s": 0.5,
        "max_age_s": 60,
        "retry_initial_s": 0.2,
        "retry_max_s": 1,
        "tick_s": 0.05,
        "gateway": {"url": gateway_url, "timeout_s": 10},
        "destination": {"ae_title": "PACS", "host": "127.0.0.1", "port": dest_port},
        "rules": [
            {"task": "brain-stroke", "modality": "CT", "body_part": "HEAD|BRAIN"},
            {"task": "brain-tumor", "modality": "MR", "body_part": "BRAIN"},
        ],
    }
    raw.update(overrides)
    return config.from_dict(raw)


def heatmap_png_b64(size: int = 64) -> str:
    ramp = np.tile(np.linspace(0, 255, size, dtype=np.uint8), (size, 1))
    rgb = np.stack([ramp, ramp[::-1], np.full_like(ramp, 40)], axis=-1)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def series_body(task: str, names: list[str], top: int, validated: bool = False) -> dict:
    """A realistic :predict_series?explain=top answer (gateway/answers.py series_body)."""
    body = {
        "model": task,
        "version": 4,
        "order": "ImagePositionPatient",
        "modality": "CT",
        "scan": {
            "label": "Stroke",
            "probability": 0.71,
            "positive": True,
            "threshold": 0.264,
            "rule": "mean of the top-3 slice probabilities",
            "top_slice": top,
            "out_of_domain_slices": 0,
        },
        "validated": validated,
        "slices": [
            {
                "index": k,
                "name": name,
                "label": "Stroke",
                "probabilities": {"Normal": 0.3, "Stroke": 0.7},
                "positive": True,
                "domain": {"ood_score": 1.0, "in_domain": True},
            }
            for k, name in enumerate(names)
        ],
        "explained": {"index": top, "heatmap_png": heatmap_png_b64(), "heatmap_label": "Stroke"},
    }
    if not validated:
        body["validated_reason"] = "below the floor: scan_auc 0.602 < 0.8"
    return body


DESCRIPTION = {
    "model": "brain-stroke",
    "version": 4,
    "intended_use": "Research triage of non-contrast head CT; not for diagnosis.",
    "validated": False,
}


class FakeGateway:
    """An HTTP server answering :predict_series like the gateway; `answers` is a list of
    (status, body) to give first (then 200 with a series body). Records each request's names."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict]] = []
        self.requests: list[list[str]] = []
        self.validated = False
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self._json(200, DESCRIPTION)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers["Content-Length"])
                raw = self.rfile.read(length)
                head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                message = email.parser.BytesParser().parsebytes(head + raw)
                names = [part.get_filename() for part in message.get_payload()]
                gateway.requests.append(names)
                if gateway.answers:
                    self._json(*gateway.answers.pop(0))
                    return
                task = self.path.split("/v1/models/")[1].split(":")[0]
                self._json(200, series_body(task, names, len(names) // 2, gateway.validated))

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Pacs:
    """A destination SCP that keeps what it receives; `wait_for(n)` blocks until n arrived."""

    def __init__(self, refuse_first: int = 0) -> None:
        self.received: list[Dataset] = []
        self.refuse_first = refuse_first
        self._cond = threading.Condition()
        ae = AE("PACS")
        for sop_class in (ComprehensiveSRStorage, SecondaryCaptureImageStorage, Verification):
            ae.add_supported_context(sop_class)
        self.server = ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )
        self.port = self.server.server_address[1]

    def _store(self, event: evt.Event) -> int:
        with self._cond:
            if self.refuse_first > 0:
                self.refuse_first -= 1
                return 0xA700
            ds = event.dataset
            ds.file_meta = event.file_meta
            self.received.append(ds)
            self._cond.notify_all()
        return 0x0000

    def wait_for(self, n: int, timeout_s: float = 60) -> list[Dataset]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.received) >= n, timeout=timeout_s)
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()


def send(datasets: list[Dataset], port: int, calling: str = "SENDER") -> list[int]:
    """C-STORE the datasets to the node with pynetdicom's SCU; the statuses (empty: rejected)."""
    ae = AE(calling)
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", datasets[0].file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="CT_TRIAGE")
    if not assoc.is_established:
        return []
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()
