"""The node as its own process (`python -m ct_dicom_node CONFIG`): killed with SIGKILL in the
middle of a series it loses nothing it acknowledged; a series over the limits is refused at
C-STORE like the gateway would refuse it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.dicom_node.helpers import FakeGateway, Pacs, ct_series, send

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp_path: Path, gateway: str, pacs_port: int, **extra) -> tuple[Path, int, int]:
    port, http = free_port(), free_port()
    lines = [
        'ae_title = "CT_TRIAGE"',
        'allowed_calling_aets = ["SENDER"]',
        'bind = "127.0.0.1"',
        f"port = {port}",
        f"http_port = {http}",
        f'spool_dir = "{tmp_path / "spool"}"',
        *[f"{k} = {v}" for k, v in ({"quiet_s": 1, "tick_s": 0.05} | extra).items()],
        "[gateway]",
        f'url = "{gateway}"',
        "[destination]",
        'ae_title = "PACS"',
        'host = "127.0.0.1"',
        f"port = {pacs_port}",
        "[[rules]]",
        'task = "brain-stroke"',
        'modality = "CT"',
    ]
    path = tmp_path / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, port, http


class NodeProcess:
    def __init__(self, config: Path, http_port: int, log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ct_dicom_node", str(config)], stdout=self.log, stderr=self.log
        )
        self.http_port = http_port
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        for _ in range(600):
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited {self.proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if json.loads(response.read())["status"] == "ok":
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("node never became healthy")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def peers():
    gateway, pacs = FakeGateway(), Pacs()
    yield gateway, pacs
    pacs.close()
    gateway.close()


def test_killed_mid_series_the_node_loses_nothing_it_acknowledged(tmp_path, peers):
    gateway, pacs = peers
    config, port, http = write_config(tmp_path, gateway.url, pacs.port, quiet_s=5)
    series = ct_series(6)
    node = NodeProcess(config, http, tmp_path / "node.log")
    assert send(series[:4], port) == [0] * 4
    node.kill()  # four acknowledged, the series not complete
    node = NodeProcess(config, http, tmp_path / "node.log")
    try:
        assert send(series[4:], port) == [0] * 2
        received = pacs.wait_for(2)
        assert sorted(ds.Modality for ds in received) == ["OT", "SR"]
        (names,) = gateway.requests  # one request with all six slices
        assert len(names) == 6
    finally:
        assert node.stop() == 0
    log = (tmp_path / "node.log").read_text()
    for ds in series:
        assert ds.SOPInstanceUID not in log and ds.StudyInstanceUID not in log
    assert str(series[0].PatientName) not in log and series[0].PatientID not in log


def test_a_series_over_the_instance_limit_is_refused_at_c_store(tmp_path, peers):
    gateway, pacs = peers
    config, port, http = write_config(tmp_path, gateway.url, pacs.port, max_series_instances=3)
    node = NodeProcess(config, http, tmp_path / "node.log")
    try:
        assert send(ct_series(5), port) == [0, 0, 0, 0xA700, 0xA700]
    finally:
        node.stop()
