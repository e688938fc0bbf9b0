"""trainer.cpu_threads: the user's thread count is kept, a launcher's default is replaced, GPUs untouched."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.cpu_threads import Launcher, choose_threads

REPO = Path(__file__).resolve().parents[2]
LAUNCHED = {"LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "ACCELERATE_MIXED_PRECISION": "no"}
USER_CLEAN = Launcher(env={"PATH": "/bin"}, argv=["accelerate", "launch", "bin/train.py"])


def test_launcher_default_is_replaced_by_cores_per_local_process():
    one = choose_threads(0, {**LAUNCHED, "OMP_NUM_THREADS": "1"}, USER_CLEAN, cores=8, gpu=False)
    assert one.threads == 8 and "replacing the launcher's OMP_NUM_THREADS=1" in one.reason
    four = choose_threads(
        0, {**LAUNCHED, "LOCAL_WORLD_SIZE": "4", "OMP_NUM_THREADS": "1"}, USER_CLEAN, 8, False
    )
    assert four.threads == 2 and "8 cores available / 4 processes" in four.reason
    assert choose_threads(0, {**LAUNCHED, "LOCAL_WORLD_SIZE": "4"}, USER_CLEAN, 2, False).threads == 1


def test_the_users_setting_is_kept():
    exported = Launcher(env={"OMP_NUM_THREADS": "3"}, argv=["accelerate", "launch", "x.py"])
    kept = choose_threads(0, {**LAUNCHED, "OMP_NUM_THREADS": "3"}, exported, cores=8, gpu=False)
    assert kept.threads is None and kept.reason == "OMP_NUM_THREADS=3 as set"
    flag = Launcher(env={}, argv=["accelerate", "launch", "--num_cpu_threads_per_process", "1", "x.py"])
    assert choose_threads(0, {**LAUNCHED, "OMP_NUM_THREADS": "1"}, flag, 8, False).threads is None
    plain_python = choose_threads(0, {"OMP_NUM_THREADS": "1"}, Launcher(None, None), 8, False)
    assert plain_python.threads is None  # no launcher: the variable can only be the user's
    explicit = choose_threads(5, {**LAUNCHED, "OMP_NUM_THREADS": "3"}, exported, 8, False)
    assert explicit.threads == 5 and explicit.reason == "train.cpu_threads = 5"


def test_unknown_launcher_environment_takes_1_as_the_launchers_default():
    unknown = Launcher(None, None)
    assert choose_threads(0, {**LAUNCHED, "OMP_NUM_THREADS": "1"}, unknown, 4, False).threads == 4
    assert choose_threads(0, {**LAUNCHED, "OMP_NUM_THREADS": "2"}, unknown, 4, False).threads is None


def test_gpu_machines_are_left_alone():
    assert choose_threads(0, {**LAUNCHED, "OMP_NUM_THREADS": "1"}, USER_CLEAN, 8, gpu=True) is None
    assert choose_threads(3, {}, USER_CLEAN, 8, gpu=True) is None


@pytest.mark.parametrize(("exported", "expected_user"), [(None, False), ("1", True)])
def test_a_launcher_that_sets_the_variable_after_it_started_is_told_apart(tmp_path, exported, expected_user):
    """As accelerate launch and torchrun do: the launcher process starts with the user's environment,
    sets OMP_NUM_THREADS=1 in its own os.environ and starts the worker with that."""
    worker = (
        "import json, os; from trainer.cpu_threads import choose_threads, parent_launcher; "
        "c = choose_threads(0, os.environ, parent_launcher(), 6, False); print(json.dumps(c.threads))"
    )
    launcher = (
        "import os, subprocess, sys; os.environ['OMP_NUM_THREADS'] = os.environ.get('OMP_NUM_THREADS', '1'); "
        "os.environ['LOCAL_RANK'] = '0'; "
        f"sys.exit(subprocess.run([sys.executable, '-c', {worker!r}]).returncode)"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
    }
    env["PYTHONPATH"] = str(REPO)
    if exported is not None:
        env["OMP_NUM_THREADS"] = exported
    out = subprocess.run(
        [sys.executable, "-c", launcher], env=env, capture_output=True, text=True, check=True
    )
    threads = json.loads(out.stdout)
    assert threads == (None if expected_user else 6), out.stdout
