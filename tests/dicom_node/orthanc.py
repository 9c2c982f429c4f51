"""Orthanc (Debian package `orthanc`) as the PACS of a test: its own configuration, storage and
free loopback ports, started as a child process and stopped with the test."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.fixtures.common import free_port

ORTHANC = shutil.which("Orthanc")
AE_TITLE = "ORTHANC"


class Orthanc:
    def __init__(self, folder: Path, node_ae: str, node_port: int) -> None:
        self.http_port, self.dicom_port = free_port(), free_port()
        config = {
            "Name": "ct-triage-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": AE_TITLE,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [],
            "DicomModalities": {"node": [node_ae, "127.0.0.1", node_port]},
            "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": False,
        }
        path = folder / "orthanc.json"
        path.write_text(json.dumps(config))
        self.log = (folder / "orthanc.log").open("wb")
        self.proc = subprocess.Popen([ORTHANC, str(path)], stdout=self.log, stderr=self.log)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self._wait_up()

    def _wait_up(self) -> None:
        for _ in range(1200):
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited {self.proc.returncode}")
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("Orthanc did not answer on its REST port")

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            data = response.read()
        return (
            json.loads(data) if response.headers.get_content_type() == "application/json" else data
        )

    def post(self, path: str, body: bytes, content_type: str = "application/json"):
        request = urllib.request.Request(
            self.url + path, body, {"Content-Type": content_type}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())

    def upload(self, data: bytes) -> dict:
        return self.post("/instances", data, "application/dicom")

    def send_to_node(self, series_id: str) -> dict:
        body = json.dumps({"Resources": [series_id], "Synchronous": True}).encode()
        return self.post("/modalities/node/store", body)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()
