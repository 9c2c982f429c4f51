"""The kind smoke's cluster checks, as pure functions: the NetworkPolicy probe's command and
verdict (a real shell runs the command with a fake curl), and which HPAs lack metrics."""

from __future__ import annotations

import os
import subprocess

import pytest

from ct_local.smoke.kube import PROBE_REFUSED, hpa_gaps, probe_command, probe_verdict


@pytest.mark.parametrize(
    ("curl_exit", "refused"), [(7, True), (28, True), (52, False), (0, False), (56, False)]
)
def test_probe_command_reads_curls_exit_code(tmp_path, curl_exit, refused):
    fake = tmp_path / "curl"
    fake.write_text(f"#!/bin/sh\nexit {curl_exit}\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    out = subprocess.run(["sh", "-c", probe_command("tf-serving:8500")], env=env,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert (probe_verdict(out) == PROBE_REFUSED) is refused
    assert probe_verdict(out) != "no verdict"


def test_probe_without_a_verdict_is_not_taken_for_refused():
    assert probe_verdict("") == "no verdict"
    assert probe_verdict("ImagePullBackOff\n") == "no verdict"


def test_hpas_without_current_metrics_are_named():
    def hpa(name, current):
        return {"metadata": {"name": name}, "status": {"current_metrics": current}}

    cpu = [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"average_utilization": 12}}}
    ]
    unknown = [{"type": "Resource", "resource": {"name": "cpu", "current": {}}}]
    hpas = [hpa("gateway", cpu), hpa("tf-serving", None), hpa("other", unknown)]
    assert hpa_gaps(hpas) == ["tf-serving", "other"]
