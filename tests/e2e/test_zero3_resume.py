"""Kill and resume under the shipped ZeRO-3 config (ds_configs/accelerate/cpu_2proc_zero3.yaml: 2 processes,
bf16, zero3_init_flag true), the configuration of the multi-GPU ZeRO-3 YAMLs on CPU.

ZeRO-3 checkpoints are per-rank parameter and optimizer shards (``zero_pp_rank_{r}_...``) and the model is
built already partitioned, so a resume has to restore both ranks' shards into a freshly partitioned model.
The job is killed (every process of the launch, as a preemption does) once fold 0's second step checkpoint
is committed, then launched again with the same command. On CPU with gloo and a fixed world size every
operation is deterministic, bf16 included, so the resumed run must be bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.test_kill_resume import ACCELERATE, REPO, kill_group, launch_env
from tests.subprocess_env import free_port
from trainer.demo import demo_dataframe

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SHIPPED_ZERO3 = REPO / "ds_configs" / "accelerate" / "cpu_2proc_zero3.yaml"
ROWS = 160
TRAIN_ARGS = [
    "--data.id_column", "id", "--folds.num_folds", "2", "--train.epochs", "2", "--train.batch_size", "8",
    "--train.save_every", "2", "--train.keep_last", "1", "--train.warmup_steps", "2",
]  # fmt: skip
MODEL = "demo-deberta-v2"


def _command(data: Path, out: Path) -> list[str]:
    return [
        str(ACCELERATE), "launch", "--config_file", str(SHIPPED_ZERO3), "--main_process_port", str(free_port()),
        str(REPO / "bin" / "train.py"), "--data.path", str(data), "--run.output_dir", str(out),
        "--run.run_name", "run", *TRAIN_ARGS,
    ]  # fmt: skip


def _run(data: Path, out: Path) -> str:
    proc = subprocess.run(
        _command(data, out), cwd=REPO, env=launch_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file  # bf16 tensors: numpy has no bfloat16

    return load_file(folder / "model.safetensors")


def test_zero3_shipped_config_resumes_exactly_after_a_kill(tmp_path):
    data = tmp_path / "train.csv"
    demo_dataframe(num_rows=ROWS).to_csv(data, index=False)
    reference = tmp_path / "reference"
    _run(data, reference)

    out = tmp_path / "killed"
    mark = out / "run" / "checkpoints" / "fold_0" / "step_4" / "ckpt_manifest.json"
    proc = subprocess.Popen(
        _command(data, out), cwd=REPO, env=launch_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "run ended before it could be killed"
    kill_group(proc)
    assert not (out / "run" / "valid_df_fold_1.csv").exists()
    shards = sorted(p.name for p in (mark.parent / "pytorch_model").glob("zero_pp_rank_*"))
    assert len([s for s in shards if "model_states" in s]) == 2, shards  # one shard per rank: ZeRO-3

    log = _run(data, out)
    assert "resumed from step_" in log
    for k in (0, 1):
        a = _weights(reference / "run" / f"{MODEL}_fold_{k}")
        b = _weights(out / "run" / f"{MODEL}_fold_{k}")
        assert a.keys() == b.keys()
        different = [name for name in a if not a[name].equal(b[name])]
        assert not different, f"fold {k}: {different[:5]}"
    cv_a = json.loads((reference / "run" / "cv.json").read_text())
    cv_b = json.loads((out / "run" / "cv.json").read_text())
    assert cv_a == cv_b
