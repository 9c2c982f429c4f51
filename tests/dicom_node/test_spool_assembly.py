"""Spooling (durable before acknowledgement, resumed on restart) and series completion."""

from __future__ import annotations

import os

from ct_dicom_node.assembly import Assembler, backoff_s
from ct_dicom_node.node import Node
from ct_dicom_node.spool import Spool, key_of
from tests.dicom_node.helpers import node_config


def test_a_series_is_due_after_its_quiet_time_or_its_maximum_age():
    asm = Assembler(quiet_s=10, max_age_s=100)
    asm.arrived("s", 1000.0, 10)
    assert asm.due(1009.9) == []
    assert asm.due(1010.0) == ["s"]
    for t in range(1005, 1100, 5):  # an instance every 5 s: never quiet
        asm.arrived("s", float(t), 10)
        assert asm.due(float(t) + 1) == []
    asm.arrived("s", 1100.0, 10)
    assert asm.due(1100.0) == ["s"]  # 100 s old


def test_a_series_put_back_waits_for_its_retry_and_keeps_new_arrivals():
    asm = Assembler(quiet_s=1, max_age_s=100)
    asm.arrived("s", 0.0, 10)
    state = asm.take("s")
    assert asm.due(50.0) == []
    asm.arrived("s", 2.0, 5)  # arrived while the series was being processed
    asm.retry_later("s", state, now_s=5.0, delay_s=4.0)
    assert asm.due(8.9) == []
    assert asm.due(9.0) == ["s"]
    assert asm.peek("s").count == 2 and asm.peek("s").attempts == 1


def test_backoff_doubles_up_to_its_cap():
    assert [backoff_s(a, 2, 30) for a in range(6)] == [2, 4, 8, 16, 30, 30]


def test_spooled_files_are_complete_and_named_without_identifiers(tmp_path):
    spool = Spool(tmp_path)
    path = spool.put("1.2.3", "1.2.3.4", b"DICM-bytes")
    assert path == tmp_path / "incoming" / key_of("1.2.3") / f"{key_of('1.2.3.4')}.dcm"
    assert path.read_bytes() == b"DICM-bytes"
    assert "1.2.3" not in str(path.relative_to(tmp_path))
    spool.put("1.2.3", "1.2.3.4", b"again")  # a re-sent instance replaces itself
    (series,) = spool.series()
    assert series.files == (path,) and series.size == len(b"again")


def test_leftover_temp_files_and_empty_folders_are_cleaned_on_resume(tmp_path):
    spool = Spool(tmp_path)
    spool.put("1.2.3", "1.2.3.4", b"x")
    folder = tmp_path / "incoming" / key_of("1.2.3")
    (folder / ".half.dcm.tmp").write_bytes(b"half-written")
    (tmp_path / "incoming" / "empty").mkdir()
    (series,) = spool.series()
    assert not (folder / ".half.dcm.tmp").exists()
    assert not (tmp_path / "incoming" / "empty").exists()
    assert len(series.files) == 1


def test_done_forgets_only_the_processed_files(tmp_path):
    spool = Spool(tmp_path)
    first = spool.put("1.2.3", "1.2.3.4", b"x")
    late = spool.put("1.2.3", "1.2.3.5", b"y")
    spool.done(key_of("1.2.3"), (first,))
    assert spool.files_of(key_of("1.2.3")) == (late,)


def test_a_restarted_node_resumes_the_spool_with_the_arrival_times_on_disk(tmp_path):
    cfg = node_config(tmp_path, "http://127.0.0.1:9", quiet_s=10)
    now = [5000.0]
    first = Node(cfg, clock=lambda: now[0])
    first.store("1.2.3", "1.2.3.4", b"a")
    first.store("1.2.3", "1.2.3.5", b"bb")
    for path in first.spool.files_of(key_of("1.2.3")):
        os.utime(path, (4990.0, 4990.0))
    # the process dies here; a new one starts on the same spool
    second = Node(cfg, clock=lambda: now[0])
    assert second.resume() == 1
    state = second.assembler.peek(key_of("1.2.3"))
    assert (state.count, state.size, state.last_s) == (2, 3, 4990.0)
    assert second.assembler.due(5000.0) == [key_of("1.2.3")]


def test_the_node_refuses_instances_over_the_series_limits(tmp_path):
    from ct_dicom_node.scp import Refuse

    node = Node(node_config(tmp_path, "http://127.0.0.1:9", max_series_instances=2))
    node.store("1.2.3", "1.2.3.1", b"a")
    node.store("1.2.3", "1.2.3.2", b"a")
    try:
        node.store("1.2.3", "1.2.3.3", b"a")
    except Refuse:
        pass
    else:
        raise AssertionError("a third instance was accepted")
    assert len(node.spool.files_of(key_of("1.2.3"))) == 2
