"""make_plan refuses to continue or delete a run folder that a live trainer holds: on this host its pid
tells, from another host its heartbeat. A live trainer refreshes that heartbeat."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from trainer.config import parse_args
from trainer.outputs import LockHeartbeat, RunFolderError, new_run_record
from trainer.plan import make_plan
from tui.core.names import LOCK_FILE, RUN_FILE


def _run_folder(tmp_path, pid: int, **lock):
    cfg = parse_args(["--run.output_dir", str(tmp_path), "--run.run_name", "r"])
    run_dir = cfg.run.run_dir()
    run_dir.mkdir(parents=True)
    (run_dir / RUN_FILE).write_text(json.dumps(new_run_record(cfg, world_size=1, mixed_precision="no", deepspeed_config=None, previous=None)))
    (run_dir / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), **lock}))
    return run_dir


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("flag", [[], ["--resume"], ["--overwrite"]])
def test_a_live_lock_is_refused_in_one_line(tmp_path, live_pid, flag):
    run_dir = _run_folder(tmp_path, live_pid)
    cfg = parse_args(["--run.output_dir", str(tmp_path), "--run.run_name", "r", *flag])
    with pytest.raises(RunFolderError, match=f"in use by process {live_pid}"):
        make_plan(cfg)
    assert (run_dir / RUN_FILE).exists()  # nothing was touched


def test_a_dead_writers_lock_is_stale(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    _run_folder(tmp_path, proc.pid)
    for flag in ([], ["--overwrite"]):
        cfg = parse_args(["--run.output_dir", str(tmp_path), "--run.run_name", "r", *flag])
        assert make_plan(cfg).mode == ("overwrite" if flag else "resume")


def test_a_fresh_lock_from_another_host_is_refused_and_a_stale_one_taken_over(tmp_path):
    run_dir = _run_folder(tmp_path, 4242, host="node7", heartbeat=time.time() - 30, heartbeat_s=60)
    cfg = parse_args(["--run.output_dir", str(tmp_path), "--run.run_name", "r", "--overwrite"])
    with pytest.raises(RunFolderError, match=r"in use by process 4242 on node7 .*heartbeat 30 s ago"):
        make_plan(cfg)
    lock = {"pid": 4242, "host": "node7", "heartbeat": time.time() - 3600, "heartbeat_s": 60}
    (run_dir / LOCK_FILE).write_text(json.dumps(lock))
    plan = make_plan(cfg)
    assert plan.mode == "overwrite"
    assert plan.notices == [f"{run_dir}: taking over a stale .lock (pid 4242 on node7: no heartbeat for 3600 s)"]


def test_the_heartbeat_refreshes_the_lock_and_removes_it_at_the_end(tmp_path):
    with LockHeartbeat(tmp_path, heartbeat_s=0.05):
        first = json.loads((tmp_path / LOCK_FILE).read_text())
        assert (first["pid"], first["host"], first["heartbeat_s"]) == (os.getpid(), socket.gethostname(), 0.05)
        deadline = time.monotonic() + 10
        while json.loads((tmp_path / LOCK_FILE).read_text())["heartbeat"] == first["heartbeat"]:
            assert time.monotonic() < deadline, "the heartbeat never refreshed the lock"
            time.sleep(0.02)
        assert json.loads((tmp_path / LOCK_FILE).read_text())["started"] == first["started"]
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_taken_over_lock_is_left_to_its_new_owner(tmp_path, capfd):
    theirs = {"pid": 4242, "host": "node7", "heartbeat": time.time()}
    beat = LockHeartbeat(tmp_path, heartbeat_s=0.05).start()
    (tmp_path / LOCK_FILE).write_text(json.dumps(theirs))
    beat._thread.join(timeout=10)
    assert not beat._thread.is_alive()  # stopped refreshing instead of fighting over the lock
    beat.stop()
    assert json.loads((tmp_path / LOCK_FILE).read_text()) == theirs
    assert "no longer names this process" in capfd.readouterr().err
