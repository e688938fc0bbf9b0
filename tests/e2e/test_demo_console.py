"""`make demo`'s training command, as a user runs it, off a terminal: fewer than 60 console lines in all
(launcher and library warnings included), ending with the CV line. About 30 s on the 2-core box."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_kill_resume import ACCELERATE, REPO, launch_env
from tests.subprocess_env import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAX_LINES = 60


def test_the_demo_prints_fewer_than_60_lines_off_a_terminal(tmp_path: Path):
    env = {k: v for k, v in launch_env().items() if k != "PYTHONPATH"}
    env["ACCELERATE_CONFIG_FILE"] = str(tmp_path / "none.yaml")  # no user default config
    config = REPO / "ds_configs" / "accelerate" / "cpu_2proc_zero2.yaml"
    proc = subprocess.run(
        # a free rendezvous port (29500 may be another test's); otherwise the Makefile's command
        [str(ACCELERATE), "launch", "--config_file", str(config), "--main_process_port", str(free_port()),
         str(REPO / "bin" / "train.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (proc.stdout + proc.stderr).splitlines()
    assert len(lines) < MAX_LINES, "\n".join(lines)
    assert lines[-1].startswith("CV f1_macro: oof "), lines[-3:]
    assert (tmp_path / "runs" / "kfold" / "cv.json").is_file()
