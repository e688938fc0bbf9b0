"""make_plan refuses to continue or delete a run folder that a live trainer on this host holds."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from trainer.config import parse_args
from trainer.outputs import RunFolderError, new_run_record
from trainer.plan import make_plan
from tui.core.names import LOCK_FILE, RUN_FILE


def _run_folder(tmp_path, pid: int):
    cfg = parse_args(["--run.output_dir", str(tmp_path), "--run.run_name", "r"])
    run_dir = cfg.run.run_dir()
    run_dir.mkdir(parents=True)
    (run_dir / RUN_FILE).write_text(json.dumps(new_run_record(cfg, world_size=1, mixed_precision="no", deepspeed_config=None, previous=None)))
    (run_dir / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
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
