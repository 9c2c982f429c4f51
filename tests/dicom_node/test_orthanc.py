"""Orthanc, real PACS software nobody here wrote, as the PACS: it holds a CT study, is told over
its REST API to send a series to the node, and afterwards its own API shows the SR and the
Secondary Capture inside that study; the SR's content is read back with highdicom. Re-sending the
series replaces the results instead of adding copies."""

from __future__ import annotations

import io
import os
import time

import highdicom as hd
import pytest

from ct_dicom_node.node import Node
from tests.dicom_node.helpers import FakeGateway, ct_series, node_config
from tests.dicom_node.orthanc import AE_TITLE, ORTHANC, Orthanc
from tests.fixtures.common import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def pacs_and_node(tmp_path):
    if ORTHANC is None:
        if os.environ.get("CT_REQUIRE_DCMTK"):
            pytest.fail(
                "CT_REQUIRE_DCMTK is set but Orthanc is missing: make -f mk/dicom.mk dicom-deps"
            )
        pytest.skip("Orthanc is not installed (make -f mk/dicom.mk dicom-deps)")
    gateway = FakeGateway()
    node_port = free_port()
    orthanc = Orthanc(tmp_path, "CT_TRIAGE", node_port)
    cfg = node_config(
        tmp_path,
        gateway.url,
        dest_port=orthanc.dicom_port,
        port=node_port,
        allowed_calling_aets=[AE_TITLE],
        destination={"ae_title": AE_TITLE, "host": "127.0.0.1", "port": orthanc.dicom_port},
    )
    node = Node(cfg).start()
    yield orthanc, node, gateway
    node.stop()
    orthanc.stop()
    gateway.close()


def part10(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def results_in(orthanc: Orthanc, study_id: str, want: int) -> list[dict]:
    """The study's instances whose modality is SR or OT, once `want` of them are there."""
    for _ in range(1200):
        found = [
            instance
            for series in orthanc.get(f"/studies/{study_id}/series")
            if series["MainDicomTags"].get("Modality") in ("SR", "OT")
            for instance in orthanc.get(f"/series/{series['ID']}/instances")
        ]
        if len(found) >= want:
            return found
        time.sleep(0.05)
    return found


def test_orthanc_sends_a_series_and_finds_the_sr_and_sc_in_the_study(pacs_and_node):
    orthanc, node, gateway = pacs_and_node
    series = ct_series(5)
    uploaded = [orthanc.upload(part10(ds)) for ds in series]
    study_id, series_id = uploaded[0]["ParentStudy"], uploaded[0]["ParentSeries"]
    job = orthanc.send_to_node(series_id)
    assert job.get("InstancesCount", 5) == 5
    found = results_in(orthanc, study_id, 2)
    modalities = sorted(
        orthanc.get(f"/instances/{i['ID']}/simplified-tags")["Modality"] for i in found
    )
    assert modalities == ["OT", "SR"]
    sr_id = next(
        i["ID"]
        for i in found
        if orthanc.get(f"/instances/{i['ID']}/simplified-tags")["Modality"] == "SR"
    )
    sr = hd.sr.srread(io.BytesIO(orthanc.get(f"/instances/{sr_id}/file")))
    assert isinstance(sr, hd.sr.ComprehensiveSR)
    assert sr.StudyInstanceUID == series[0].StudyInstanceUID
    said = {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in sr.ContentSequence}
    assert said["Finding"].ConceptCodeSequence[0].CodeMeaning == "Stroke"
    assert series[0].SeriesInstanceUID == said["Series Instance UID"].UID

    # the same series again: Orthanc still holds one SR and one SC in the study
    orthanc.send_to_node(series_id)
    for _ in range(1200):  # until the second pair was accepted
        if node.metrics.delivered._value.get() >= 4:
            break
        time.sleep(0.05)
    assert len(gateway.requests) == 2 and node.metrics.delivered._value.get() == 4
    assert len(results_in(orthanc, study_id, 2)) == 2
