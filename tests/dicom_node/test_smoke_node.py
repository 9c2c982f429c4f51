"""The smoke's DICOM node check (ct_local/smoke/dicom.py, what `make kind-smoke` runs through a
port-forward) against a node on loopback: a fake gateway answers, a pynetdicom SCP is the PACS."""

from __future__ import annotations

import pytest

from ct_dicom_node.node import Node
from ct_local.smoke.__main__ import parse_args
from ct_local.smoke.client import SmokeError
from ct_local.smoke.dicom import (
    SMOKE_CALLING_AE,
    SMOKE_SLICES,
    check_dicom_node,
    ct_series,
    parse_address,
)
from tests.dicom_node.helpers import FakeGateway, Pacs, node_config

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path):
    gateway, pacs = FakeGateway(), Pacs()
    settings = node_config(
        tmp_path, gateway.url, dest_port=pacs.port, allowed_calling_aets=["PACS", SMOKE_CALLING_AE]
    )
    node = Node(settings).start()
    http = f"http://127.0.0.1:{node._http.server_address[1]}"
    yield node, http, gateway, pacs
    node.stop()
    pacs.close()
    gateway.close()


def test_the_smoke_series_is_a_routable_ct_head_series():
    series = ct_series()
    assert len(series) == SMOKE_SLICES
    assert len({ds.SeriesInstanceUID for ds in series}) == 1
    assert len({ds.SOPInstanceUID for ds in series}) == SMOKE_SLICES
    assert {(ds.Modality, ds.BodyPartExamined) for ds in series} == {("CT", "HEAD")}
    assert ct_series()[0].StudyInstanceUID != series[0].StudyInstanceUID  # new each run


def test_the_node_check_passes_against_a_node_on_loopback(stack):
    node, http, gateway, pacs = stack
    outcome = check_dicom_node(f"127.0.0.1:{node.port}", 60, http_base=http)
    assert outcome == "filed"
    # The node sent the smoke's series to the gateway as one request ...
    assert len(gateway.requests) == 1 and len(gateway.requests[0]) == SMOKE_SLICES
    # ... and (here, where there is a PACS) filed the SR and the Secondary Capture.
    assert sorted(ds.Modality for ds in pacs.wait_for(2)) == ["OT", "SR"]


def test_a_refusing_gateway_still_counts_as_an_answer(stack):
    node, http, gateway, _ = stack
    gateway.answers = [(422, {"error": "out_of_domain", "detail": "not a head CT"})]
    assert check_dicom_node(f"127.0.0.1:{node.port}", 60, http_base=http) == "refused"


def test_echo_only_sends_nothing(stack):
    node, http, gateway, _ = stack
    assert check_dicom_node(f"127.0.0.1:{node.port}", 60, http_base=http, send_series=False) is None
    assert gateway.requests == []


def test_a_calling_ae_off_the_allow_list_fails_the_check(stack):
    node, http, gateway, _ = stack
    with pytest.raises(SmokeError, match="rejected"):
        check_dicom_node(f"127.0.0.1:{node.port}", 60, calling="INTRUDER", http_base=http)
    assert gateway.requests == []


def test_a_node_whose_gateway_is_away_fails_the_check(stack):
    node, http, gateway, _ = stack
    gateway.close()  # the node's requests now fail to connect: gateway_retry, never an answer
    with pytest.raises(SmokeError, match="no gateway answer"):
        check_dicom_node(f"127.0.0.1:{node.port}", 3, http_base=http)


def test_nothing_listening_fails_the_check():
    with pytest.raises(SmokeError, match="no association"):
        check_dicom_node("127.0.0.1:1", 1)


def test_the_command_line_takes_the_node():
    args = parse_args(
        ["--base-url", "http://x", "--dicom-node", "127.0.0.1:11112", "--dicom-node-http", "h"]
    )
    assert (args.dicom_node, args.dicom_node_http) == ("127.0.0.1:11112", "h")
    assert args.dicom_calling_ae == SMOKE_CALLING_AE and not args.no_dicom_store
    assert parse_args(["--base-url", "http://x"]).dicom_node == ""  # off unless asked
    assert parse_address("::1:104") == ("::1", 104)
    with pytest.raises(SmokeError):
        parse_address("localhost")
