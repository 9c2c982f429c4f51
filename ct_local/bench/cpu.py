"""CPU seconds a process tree has used (Linux /proc): what the model server spends per request."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields after "pid (comm)"


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants (threads included)."""
    total = 0
    for p in descendants(pid):
        fields = _stat(p)
        if fields:  # utime, stime are fields 14 and 15 of /proc/<pid>/stat
            total += int(fields[11]) + int(fields[12])
    return total / TICKS
