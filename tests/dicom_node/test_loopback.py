"""The node on loopback, over real DICOM networking: pynetdicom's SCU (and dcmtk's storescu
where installed) sends a CT series, a fake gateway answers, a pynetdicom SCP is the PACS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from ct_dicom_node.node import Node
from tests.dicom_node.helpers import FakeGateway, Pacs, ct_series, node_config, send

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path):
    gateway, pacs = FakeGateway(), Pacs()
    node = Node(node_config(tmp_path, gateway.url, dest_port=pacs.port)).start()
    yield node, gateway, pacs
    node.stop()
    pacs.close()
    gateway.close()


def check_results(pacs: Pacs, series) -> None:
    received = pacs.wait_for(2)
    assert sorted(ds.Modality for ds in received) == ["OT", "SR"]
    for ds in received:
        assert ds.StudyInstanceUID == series[0].StudyInstanceUID
        assert ds.PatientID == series[0].PatientID
    sr = next(ds for ds in received if ds.Modality == "SR")
    uids = {item.get("UID") for item in sr.ContentSequence}
    assert series[0].SeriesInstanceUID in uids
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert len(evidence.ReferencedSOPSequence) == len(series)


def test_a_series_sent_by_c_store_comes_back_as_an_sr_and_a_secondary_capture(stack):
    node, gateway, pacs = stack
    series = ct_series(6)
    assert send(series, node.port) == [0] * 6
    check_results(pacs, series)
    assert len(gateway.requests) == 1 and len(gateway.requests[0]) == 6


def test_an_unknown_calling_ae_is_rejected_at_association(stack):
    node, gateway, pacs = stack
    assert send(ct_series(1), node.port, calling="INTRUDER") == []
    assert send(ct_series(1), node.port, calling="SENDER") == [0]


def test_c_echo_answers_and_the_http_side_serves_health_and_metrics(stack):
    node, _, _ = stack
    ae = AE("SENDER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="CT_TRIAGE")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()
    base = f"http://127.0.0.1:{node._http.server_address[1]}"
    with urllib.request.urlopen(f"{base}/healthz") as response:
        assert json.loads(response.read()) == {"status": "ok"}
    with urllib.request.urlopen(f"{base}/metrics") as response:
        text = response.read().decode()
    assert 'ct_dicom_associations_total{outcome="accepted"} 1.0' in text


def test_the_destination_refusing_at_first_still_gets_the_results(tmp_path):
    gateway, pacs = FakeGateway(), Pacs(refuse_first=2)
    node = Node(node_config(tmp_path, gateway.url, dest_port=pacs.port)).start()
    try:
        series = ct_series(3)
        assert send(series, node.port) == [0] * 3
        check_results(pacs, series)
        assert node.metrics.delivery_retries._value.get() >= 1
    finally:
        node.stop()
        pacs.close()
        gateway.close()


STORESCU = shutil.which("storescu")


def test_dcmtk_storescu_as_the_sender(stack, tmp_path):
    if STORESCU is None:
        if os.environ.get("CT_REQUIRE_DCMTK"):
            pytest.fail(
                "CT_REQUIRE_DCMTK is set but storescu is missing: make -f mk/dicom.mk dicom-deps"
            )
        pytest.skip("dcmtk's storescu is not installed (make -f mk/dicom.mk dicom-deps)")
    node, _, pacs = stack
    series = ct_series(4)
    folder = tmp_path / "out"
    folder.mkdir()
    for k, ds in enumerate(series):
        ds.save_as(folder / f"{k}.dcm", enforce_file_format=True)
    echo = [shutil.which("echoscu"), "-aet", "STORESCU", "-aec", "CT_TRIAGE"]
    subprocess.run([*echo, "127.0.0.1", str(node.port)], check=True, timeout=60)
    command = [STORESCU, "-aet", "STORESCU", "-aec", "CT_TRIAGE", "127.0.0.1", str(node.port)]
    subprocess.run([*command, *sorted(map(str, folder.iterdir()))], check=True, timeout=60)
    check_results(pacs, series)
    refused = subprocess.run(
        [
            STORESCU,
            "-aet",
            "NOBODY",
            "-aec",
            "CT_TRIAGE",
            "127.0.0.1",
            str(node.port),
            str(folder / "0.dcm"),
        ],
        capture_output=True,
        timeout=60,
    )
    assert refused.returncode != 0
