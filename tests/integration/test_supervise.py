"""ct_local.supervise with tiny shell children: a child that dies is restarted after a capped,
doubling delay while the others keep running; a fatal exit code stops everything; a stop request
ends the children and their process groups."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from ct_local.supervise import Backoff, Child, Supervisor, describe

pytestmark = pytest.mark.integration


def sleeper(name: str) -> Child:
    return Child(name, ["sleep", "60"])


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap():
    backoff = Backoff(initial_s=1, cap_s=30)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_describe_names_the_signal_that_killed_a_child():
    assert describe(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe(3) == "exited with 3"


def test_a_killed_child_is_restarted_after_the_backoff_and_the_other_keeps_running():
    server, gateway = sleeper("model server"), sleeper("gateway")
    cleaned: list[int] = []
    server.on_exit = cleaned.append
    messages: list[str] = []
    supervisor = Supervisor([server, gateway], Backoff(initial_s=0.3, cap_s=1), messages.append)
    for child in supervisor.children:
        child.start()
    try:
        first, gateway_pid = server.process.pid, gateway.process.pid
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        died = time.monotonic()
        assert supervisor.tick(died) is None
        assert cleaned == [first]
        assert server.restart_at == pytest.approx(died + 0.3)
        assert supervisor.tick(died + 0.29) is None and server.process.pid == first
        assert supervisor.tick(died + 0.3) is None
        assert server.process.pid != first and server.process.poll() is None
        assert gateway.process.pid == gateway_pid and gateway.process.poll() is None
        assert messages == [
            "model server killed by SIGKILL; restarting in 0.3 s",
            f"model server restarted (pid {server.process.pid})",
        ]
    finally:
        supervisor.stop()


def test_a_child_that_keeps_dying_waits_longer_each_time_up_to_the_cap():
    crasher = Child("model server", ["sh", "-c", "exit 1"])
    supervisor = Supervisor([crasher], Backoff(initial_s=1, cap_s=4), lambda _: None)
    crasher.start()
    delays = []
    for _ in range(4):
        crasher.process.wait()
        now = time.monotonic()
        supervisor.tick(now)
        delays.append(round(crasher.restart_at - now, 3))
        supervisor.tick(crasher.restart_at)
    assert delays == [1, 2, 4, 4]
    crasher.process.wait()
    crasher.started -= supervisor.backoff.stable_s  # it ran long enough: back to the start
    supervisor.tick(time.monotonic())
    assert crasher.failures == 1


def test_a_fatal_exit_code_stops_the_stack_with_that_code():
    bad = Child("gateway", ["sh", "-c", "exit 2"], fatal_codes=frozenset({2}))
    other = sleeper("model server")
    supervisor = Supervisor([other, bad], Backoff(initial_s=0.1), lambda _: None)
    started = time.monotonic()
    assert supervisor.run() == 2
    assert time.monotonic() - started < 5
    assert other.process.returncode == -signal.SIGTERM


def test_a_stop_request_ends_the_children_and_their_process_groups(tmp_path):
    # The leader's own child (a gunicorn worker, say) is in its group and must go too; the leader
    # ignores SIGTERM, so only the SIGKILL of its group after the grace period ends them.
    pid_file = tmp_path / "worker.pid"
    script = f"trap '' TERM; sleep 60 & echo $! > {pid_file}; wait"
    leader = Child("gateway", ["sh", "-c", script])
    children = [leader, sleeper("model server")]
    supervisor = Supervisor(children, Backoff(), lambda _: None, stop_timeout_s=0.5)
    runner = threading.Thread(target=supervisor.run)
    runner.start()
    wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip())
    worker = int(pid_file.read_text())
    supervisor.request_stop(signal.SIGINT)
    runner.join(20)
    assert not runner.is_alive()
    for child in supervisor.children:
        assert child.process.returncode is not None
    wait_for(lambda: not alive(worker))


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped by init is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False
