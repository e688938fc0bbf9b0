"""pid_alive: a running process is alive; an exited one, reaped or still a zombie, is not."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tui.core.process import pid_alive


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
