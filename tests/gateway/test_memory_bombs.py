"""Issue 17's bomb classes against a worker's decoding path, each in a fresh process: the peak
RSS the bomb adds (VmHWM after clear_refs, ct_local/bench/bombs.py) stays under the request's
decoding budget, and the answer is a refusal (413) or, within the budget, a normal answer."""

from __future__ import annotations

import sys

import pytest

from ct_local.bench.bombs import BOMBS, measure

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status"),
]
EXPECTED = {
    "deflated-dicom-1GiB": (413, "memory_budget"),
    "png-series-24-grey-6000": (200, "ok"),  # 72 MB at once: within the 96 MiB budget
    "png-series-8-rgb-6000": (413, "memory_budget"),
    "j2k-dicom-16bit-6000": (413, "memory_budget"),
    "zip-directory-4M-records": (413, "too_many_slices"),
}


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_a_bomb_costs_a_worker_less_than_the_budget(kind):
    figures = measure(kind)
    assert figures["peak_bytes"] < figures["budget_bytes"], figures
    assert (figures["status"], figures["code"]) == EXPECTED.get(kind, (200, "ok")), figures
