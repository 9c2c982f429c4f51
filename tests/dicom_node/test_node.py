"""A series through the node's worker with a fake gateway (HTTP on loopback) and a fake
destination (a function): routing, gateway outcomes, delivery retries, logs without PHI. The
clock is a variable the tests move: nothing sleeps."""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from ct_dicom_node.node import Node
from ct_dicom_node.spool import key_of
from tests.dicom_node.helpers import (
    PATIENT_ID,
    PATIENT_NAME,
    FakeGateway,
    ct_series,
    node_config,
)


@pytest.fixture
def gateway():
    fake = FakeGateway()
    yield fake
    fake.close()


class Destination:
    """Accepts nothing while `down`, else everything; keeps what it accepted."""

    def __init__(self) -> None:
        self.down = False
        self.accepted: list = []
        self.tries = 0

    def __call__(self, paths: list[Path]) -> dict[Path, bool]:
        self.tries += 1
        if self.down:
            return dict.fromkeys(paths, False)
        self.accepted += [dcmread(p) for p in paths]
        return dict.fromkeys(paths, True)


class Clock:
    """Starts at the wall clock (file mtimes, which the spool reads, are wall-clock times)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def make_node(tmp_path, gateway, **overrides):
    clock, dest = Clock(), Destination()
    node = Node(node_config(tmp_path, gateway.url, **overrides), clock=clock, sender=dest)
    return node, clock, dest


def spool_series(node: Node, datasets) -> None:
    for ds in datasets:
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        node.store(ds.SeriesInstanceUID, ds.SOPInstanceUID, buf.getvalue())


def test_a_head_ct_series_is_scored_once_and_its_sr_and_sc_delivered(tmp_path, gateway):
    node, clock, dest = make_node(tmp_path, gateway)
    series = ct_series(5)
    spool_series(node, series)
    node.tick()
    assert gateway.requests == []  # not quiet yet
    clock.now += 1
    node.tick()
    (names,) = gateway.requests
    assert len(names) == 5 and all(n.endswith(".dcm") for n in names)
    kinds = sorted(ds.Modality for ds in dest.accepted)
    assert kinds == ["OT", "SR"]
    assert all(ds.StudyInstanceUID == series[0].StudyInstanceUID for ds in dest.accepted)
    sr = next(ds for ds in dest.accepted if ds.Modality == "SR")
    top = sr.ContentSequence[-1].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    # the fake names slice 5 // 2 of what it got as the top one; the node maps the name back
    by_name = {f"{key_of(ds.SOPInstanceUID)}.dcm": ds.SOPInstanceUID for ds in series}
    assert top == by_name[names[2]]
    assert node.spool.files_of(key_of(series[0].SeriesInstanceUID)) == ()
    assert node.outbox.waiting() == []


def test_a_series_no_rule_matches_is_ignored_with_a_log_line_without_phi(tmp_path, gateway, caplog):
    node, clock, dest = make_node(tmp_path, gateway)
    series = ct_series(2, body_part="CHEST")
    caplog.set_level(logging.INFO, logger="ct_dicom_node")
    spool_series(node, series)
    clock.now += 1
    node.tick()
    assert gateway.requests == [] and dest.accepted == []
    assert any("ignored" in r.getMessage() for r in caplog.records)
    assert node.spool.files_of(key_of(series[0].SeriesInstanceUID)) == ()
    assert_no_phi(caplog, series)


def assert_no_phi(caplog, series) -> None:
    secrets = [PATIENT_NAME, PATIENT_ID, "Testpatient", series[0].StudyInstanceUID]
    secrets += [series[0].SeriesInstanceUID] + [ds.SOPInstanceUID for ds in series]
    for record in caplog.records:
        line = record.getMessage() + repr(vars(record))
        assert not [s for s in secrets if s in line], line


def test_gateway_unavailable_retries_with_backoff_then_files(tmp_path, gateway, caplog):
    node, clock, dest = make_node(tmp_path, gateway)
    gateway.answers = [(503, {"error": {"code": "unavailable", "message": "x"}})] * 2
    series = ct_series(2)
    caplog.set_level(logging.INFO, logger="ct_dicom_node")
    spool_series(node, series)
    clock.now += 1
    node.tick()  # 503: retry in 0.2 s
    assert len(gateway.requests) == 1 and dest.accepted == []
    node.tick()
    assert len(gateway.requests) == 1  # not due yet (the clock did not move)
    clock.now += 0.21
    node.tick()  # 503 again: retry in 0.4 s
    clock.now += 0.3
    node.tick()
    assert len(gateway.requests) == 2
    clock.now += 0.11  # past the 0.4 s backoff (float sums of wall-clock times round)
    node.tick()
    assert len(gateway.requests) == 3 and len(dest.accepted) == 2
    assert_no_phi(caplog, series)


def test_an_out_of_domain_refusal_files_nothing_and_keeps_the_series_for_an_operator(
    tmp_path, gateway, caplog
):
    node, clock, dest = make_node(tmp_path, gateway)
    refusal = {"error": {"code": "out_of_domain", "message": "ood score 9.1 > 3.2"}}
    gateway.answers = [(422, refusal)]
    series = ct_series(2)
    caplog.set_level(logging.INFO, logger="ct_dicom_node")
    spool_series(node, series)
    clock.now += 1
    node.tick()
    clock.now += 100
    node.tick()
    assert len(gateway.requests) == 1 and dest.accepted == []
    assert len(list((node.spool.failed / key_of(series[0].SeriesInstanceUID)).iterdir())) == 2
    assert any(getattr(r, "code", None) == "out_of_domain" for r in caplog.records)
    text = node.metrics.series.labels("refused", "brain-stroke")._value.get()
    assert text == 1


def test_results_are_kept_until_the_destination_accepts_them(tmp_path, gateway):
    node, clock, dest = make_node(tmp_path, gateway)
    dest.down = True
    spool_series(node, ct_series(2))
    clock.now += 1
    node.tick()
    assert len(node.outbox.waiting()) == 2 and dest.tries == 1
    node.tick()
    assert dest.tries == 1  # backing off
    clock.now += 0.21
    node.tick()
    assert dest.tries == 2
    # the process restarts with the destination still down: the outbox is on disk
    again, clock2, dest2 = make_node(tmp_path, gateway)
    again.resume()
    again.tick()
    assert len(dest2.accepted) == 2 and again.outbox.waiting() == []
    assert node.metrics.delivery_retries._value.get() == 4  # two objects, two failed tries each


def test_a_resent_series_gives_the_same_result_uids(tmp_path, gateway):
    node, clock, dest = make_node(tmp_path, gateway)
    series = ct_series(3)
    for _ in range(2):
        spool_series(node, series)
        clock.now += 1
        node.tick()
    assert len(dest.accepted) == 4
    uids = [ds.SOPInstanceUID for ds in dest.accepted]
    assert uids[:2] == uids[2:]


def test_late_instances_are_scored_with_the_earlier_ones_of_their_series(tmp_path, gateway):
    node, clock, dest = make_node(tmp_path, gateway)
    series = ct_series(5)
    spool_series(node, series[:3])
    clock.now += 1
    node.tick()
    spool_series(node, series[3:])  # after the series was scored: a pause longer than quiet_s
    clock.now += 1
    node.tick()
    assert [len(names) for names in gateway.requests] == [3, 5]
    sr_uids = [ds.SOPInstanceUID for ds in dest.accepted if ds.Modality == "SR"]
    assert len(sr_uids) == 2 and sr_uids[0] == sr_uids[1]  # the second replaces the first
    evidence = dest.accepted[-2:]
    sr = next(ds for ds in evidence if ds.Modality == "SR")
    refs = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert len(refs.ReferencedSOPSequence) == 5


def test_scored_instances_are_deleted_after_keep_done_s(tmp_path, gateway):
    node, clock, dest = make_node(tmp_path, gateway, keep_done_s=60)
    series = ct_series(3)
    spool_series(node, series[:2])
    clock.now += 1
    node.tick()
    key = key_of(series[0].SeriesInstanceUID)
    assert len(list((node.spool.finished / key).iterdir())) == 2
    clock.now += 30
    node.tick()
    assert (node.spool.finished / key).is_dir()
    clock.now += 31
    node.tick()
    assert not (node.spool.finished / key).exists()
    spool_series(node, series[2:])  # too late to join: scored alone
    clock.now += 1
    node.tick()
    assert [len(names) for names in gateway.requests] == [2, 1]


def test_an_ignored_series_is_not_kept(tmp_path, gateway):
    node, clock, _ = make_node(tmp_path, gateway)
    spool_series(node, ct_series(2, body_part="CHEST"))
    clock.now += 1
    node.tick()
    assert list(node.spool.finished.iterdir()) == []
