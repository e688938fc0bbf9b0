"""pid_alive: a running process is alive; an exited one, reaped or still a zombie, is not. judge_lock: on
the lock's host the pid decides, from another host the heartbeat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tui.core.process import HEARTBEAT_S, STALE_HEARTBEATS, judge_lock, pid_alive, read_lock


def test_running_process_is_alive():
    assert pid_alive(os.getpid())


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="zombies are told apart through /proc")
def test_an_unreaped_zombie_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # exited but not waited for: a zombie
        with open(f"/proc/{child.pid}/stat", "rb") as f:
            if b") Z" in f.read():
                break
        time.sleep(0.02)
    else:
        pytest.fail("child never became a zombie")
    try:
        os.kill(child.pid, 0)  # the kernel still answers for it...
        assert not pid_alive(child.pid)  # ...but it holds nothing
    finally:
        child.wait()
    assert not pid_alive(child.pid)


@pytest.mark.parametrize("pid", [0, -1, 2**40, -(2**40)])
def test_impossible_pids_are_dead(pid):
    assert not pid_alive(pid)


NOW = 1_800_000_000.0


def _judge(data, mtime=None, alive=()):
    return judge_lock(data, mtime=mtime, now=NOW, hostname="here", is_alive=lambda pid: pid in alive)


def test_on_its_own_host_the_pid_decides_whatever_the_heartbeat():
    old = {"pid": 7, "host": "here", "heartbeat": NOW - 86400}
    assert _judge(old, alive={7}).live and _judge({"pid": 7}, alive={7}).live  # no host: this one
    fresh = {"pid": 7, "host": "here", "heartbeat": NOW}
    holder = _judge(fresh)
    assert not holder.live and holder.why == "stale .lock (pid 7 on here is not running)"


def test_from_another_host_the_heartbeat_decides():
    stale_after = STALE_HEARTBEATS * HEARTBEAT_S
    lock = {"pid": 7, "host": "node3"}
    fresh = _judge({**lock, "heartbeat": NOW - stale_after + 1})
    assert fresh.live and fresh.why == f"held by pid 7 on node3 (heartbeat {stale_after - 1:.0f} s ago)"
    stale = _judge({**lock, "heartbeat": NOW - stale_after - 1})
    assert not stale.live and stale.why == f"stale .lock (pid 7 on node3: no heartbeat for {stale_after + 1:.0f} s)"
    # a lock written before heartbeats existed: its mtime is the last sign of life
    assert _judge(lock, mtime=NOW - 10).live and not _judge(lock, mtime=NOW - stale_after - 1).live
    assert not _judge({**lock, "heartbeat": NOW - 10 * stale_after}, mtime=NOW - 10).live  # a copy's mtime
    # the writer's own interval, when it says so
    assert _judge({**lock, "heartbeat": NOW - 50, "heartbeat_s": 5}).live is False
    assert _judge(lock).live  # nothing to judge by: assume it is held


@pytest.mark.parametrize("data", [{}, {"pid": "12"}, {"pid": True}, [], "12"])
def test_a_lock_without_a_pid_counts_as_held(data):
    holder = _judge(data)
    assert holder.live and holder.pid is None


def test_read_lock_reads_our_json_other_tools_pid_files_and_nothing(tmp_path):
    lock = tmp_path / ".lock"
    assert read_lock(lock) is None
    lock.write_text(json.dumps({"pid": os.getpid(), "host": "here"}))
    held = read_lock(lock, hostname="here")
    assert held is not None and held.live and held.pid == os.getpid()
    lock.write_text(f"{os.getpid()}\n")  # a plain pid file
    assert read_lock(lock, hostname="here").live
    lock.write_text(json.dumps({"pid": 12345, "host": "node7", "heartbeat": 1000.0, "heartbeat_s": 60}))
    stale = read_lock(lock, now=1000.0 + 60 * STALE_HEARTBEATS + 1, hostname="here")
    assert not stale.live and "no heartbeat" in stale.why
    lock.write_text("not a lock")
    assert read_lock(lock, hostname="here").live  # no pid: counts as held
