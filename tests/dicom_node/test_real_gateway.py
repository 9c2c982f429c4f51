"""The node against the real gateway (gunicorn, in front of the stand-in model server serving the
tiny models: the session's `gateway_server` fixture): the request the node builds is one the
gateway scores, and the answer it parses is the gateway's own."""

from __future__ import annotations

import pytest

from ct_dicom_node.node import Node
from tests.dicom_node.helpers import Pacs, ct_series, node_config, send

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_series_through_the_real_gateway_comes_back_as_sr_and_sc(gateway_server, tmp_path):
    pacs = Pacs()
    node = Node(node_config(tmp_path, str(gateway_server), dest_port=pacs.port)).start()
    try:
        series = ct_series(4)
        assert send(series, node.port) == [0] * 4
        received = pacs.wait_for(2)
        assert sorted(ds.Modality for ds in received) == ["OT", "SR"], node.metrics.series
        sr = next(ds for ds in received if ds.Modality == "SR")
        said = {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in sr.ContentSequence}
        assert said["Algorithm Name"].TextValue == "brain-stroke"
        assert said["Slice that weighed most"].ReferencedSOPSequence[
            0
        ].ReferencedSOPInstanceUID in {ds.SOPInstanceUID for ds in series}
        assert sr.StudyInstanceUID == series[0].StudyInstanceUID
    finally:
        node.stop()
        pacs.close()
