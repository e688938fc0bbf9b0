"""bench/gpu_check.sh and bench/gpu_check.py without a GPU: the shell script parses, the MFU arithmetic is
right, and the whole script runs end to end on CPU (``--cpu-smoke``: the same jobs, YAMLs, figures and
fold reloads with a tiny model; the GPU lane collected, not run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.subprocess_env import cpu_only

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import gpu_check  # noqa: E402


def test_the_shell_script_parses():
    subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu_check.sh")], check=True)


def test_peak_flops_by_device_name():
    assert gpu_check.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_check.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu_check.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_check.peak_flops("Tesla T4") == 65e12
    assert gpu_check.peak_flops("NVIDIA L40S") == 362e12 and gpu_check.peak_flops("NVIDIA L4") == 121e12
    assert gpu_check.peak_flops("Some Future GPU") is None


def test_flops_per_token_of_deberta_v3_xsmall():
    config = {"hidden_size": 384, "num_hidden_layers": 12, "intermediate_size": 1536}
    matmul = 12 * (4 * 384**2 + 2 * 384 * 1536)  # 21.2 M: the encoder without its embeddings
    assert matmul == 21_233_664
    assert gpu_check.flops_per_token(config, 64.0) == 6 * matmul + 12 * 12 * 384 * 64


@pytest.mark.e2e
@pytest.mark.slow
def test_cpu_smoke_runs_the_whole_script(tmp_path):
    env = {**cpu_only(), "PY": sys.executable}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu-smoke", "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "CPU smoke run" in out
    for job in ("fp16 ZeRO-2", "bf16 ZeRO-3"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {job} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[2]) > 0 and cells[4] == "n/a" and cells[-1] == "2/2", row  # samples/s, MFU, reloads
    assert "6 tests collected" in out or "6 tests" in out, out[-1500:]
    assert os.path.isdir(tmp_path / "runs" / "bf16_ZeRO-3" / "checkpoints")
