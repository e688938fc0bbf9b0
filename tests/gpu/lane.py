"""Shared by the GPU lane (tests/gpu) and bench/gpu_check.py: launch a K-fold job on the GPU(s) through the
real command, read its figures from run.json, and reload every fold folder it wrote.

``CKPT_TUI_GPU_LANE_ON_CPU=1`` rehearses the lane on a machine without a GPU: the same YAMLs and checks on
CPU processes (GPUs hidden, gloo, and DeepSpeed's fp16 refusal lifted by the trainer's marked test seam).
It proves the lane's own code, not the GPU: a rehearsal says so in every skip/figure it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
YAMLS = REPO / "ds_configs" / "accelerate"
REHEARSAL_ENV = "CKPT_TUI_GPU_LANE_ON_CPU"
ALLOW_CPU_FP16_ENV = "CKPT_TUI_TEST_ALLOW_CPU_FP16"  # trainer/loop.py's test seam


def rehearsal() -> bool:
    return os.environ.get(REHEARSAL_ENV) == "1"


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def processes() -> int:
    """Processes per job: 2 where two GPUs exist (ZeRO shards something), else 1."""
    return 1 if rehearsal() else max(1, min(gpu_count(), 2))


def launch_env(port: int | None = None) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("ACCELERATE_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_"))
    }  # fmt: skip
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env["ACCELERATE_CONFIG_FILE"] = os.devnull  # never a user's default accelerate config
    if rehearsal():
        env["CUDA_VISIBLE_DEVICES"] = ""
        env[ALLOW_CPU_FP16_ENV] = "1"
    return env


def command(yaml_name: str, train_args: list[str], port: int, procs: int | None = None) -> list[str]:
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(YAMLS / yaml_name),
        "--num_processes", str(procs or processes()), "--main_process_port", str(port),
        str(REPO / "bin" / "train.py"), *train_args,
    ]  # fmt: skip


def run_job(
    yaml_name: str, train_args: list[str], port: int, log: Path, timeout: int = 600, procs: int | None = None
) -> float:
    """Launch, wait, return wall seconds; the console goes to ``log``. Raises on failure with its tail."""
    import time

    started = time.perf_counter()
    with open(log, "w") as sink:
        proc = subprocess.run(
            command(yaml_name, train_args, port, procs), cwd=REPO, env=launch_env(), stdout=sink,
            stderr=subprocess.STDOUT, timeout=timeout,
        )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{yaml_name} failed (exit {proc.returncode}):\n{log.read_text()[-4000:]}")
    return time.perf_counter() - started


@dataclass
class JobFigures:
    folds: int
    optimizer_steps: int
    skipped_steps: int
    train_samples: int
    train_tokens: int
    train_seconds: float
    peak_gpu_memory_bytes: int | None
    oof: dict[str, float]

    @property
    def samples_per_s(self) -> float:
        return self.train_samples / max(self.train_seconds, 1e-9)

    @property
    def tokens_per_s(self) -> float:
        return self.train_tokens / max(self.train_seconds, 1e-9)


def figures(run_dir: Path) -> JobFigures:
    run = json.loads((run_dir / "run.json").read_text())
    stats = run["fold_stats"].values()
    peaks = [s["peak_gpu_memory_bytes"] for s in stats if s.get("peak_gpu_memory_bytes") is not None]
    cv = json.loads((run_dir / "cv.json").read_text())
    return JobFigures(
        folds=len(stats),
        optimizer_steps=sum(s["optimizer_steps"] for s in stats),
        skipped_steps=sum(s["skipped_steps"] for s in stats),
        train_samples=sum(s["train_samples"] for s in stats),
        train_tokens=sum(s["train_tokens"] for s in stats),
        train_seconds=sum(s["train_seconds"] for s in stats),
        peak_gpu_memory_bytes=max(peaks) if peaks else None,
        oof={k: v for k, v in cv["oof"].items() if k != "n"},
    )


def fold_dirs(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.iterdir() if p.is_dir() and "_fold_" in p.name)


def reload_fold(fold_dir: Path, valid_csv: Path, rows: int = 64) -> dict[str, float]:
    """Load a fold folder the way a user does (``from_pretrained``, fp32, one process, on the GPU when
    there is one), predict the first ``rows`` validation rows and compare with what training saved:
    {"params", "max_prob_diff", "agreement"}. Raises when the folder does not load whole."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tui.core.commit import verify

    problems = verify(fold_dir)
    if problems:
        raise AssertionError(f"{fold_dir}: {problems[0]}")
    model, info = AutoModelForSequenceClassification.from_pretrained(
        fold_dir, local_files_only=True, dtype=torch.float32, output_loading_info=True
    )
    missing = [k for k in info["missing_keys"] if "position_ids" not in k]
    if missing or info["mismatched_keys"]:
        raise AssertionError(f"{fold_dir}: missing {missing[:3]}, mismatched {info['mismatched_keys'][:3]}")
    empty = [n for n, p in model.named_parameters() if p.numel() == 0]  # a ZeRO-3 shard saved ungathered
    if empty:
        raise AssertionError(f"{fold_dir}: empty parameters {empty[:3]}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(fold_dir)
    frame = pd.read_csv(valid_csv).head(rows)
    prob_cols = [f"prob_{model.config.id2label[i]}" for i in range(model.config.num_labels)]
    with torch.no_grad():
        batch = tokenizer(frame["text"].astype(str).tolist(), padding=True, truncation=True,
                          max_length=128, return_tensors="pt").to(device)  # fmt: skip
        probs = model(**batch).logits.float().softmax(-1).cpu().numpy()
    saved = frame[prob_cols].to_numpy(dtype=np.float64)
    return {
        "params": float(sum(p.numel() for p in model.parameters())),
        "max_prob_diff": float(np.abs(probs - saved).max()),
        "agreement": float((probs.argmax(1) == saved.argmax(1)).mean()),
    }


def reload_all(run_dir: Path) -> list[dict[str, float]]:
    out = []
    for fold_dir in fold_dirs(run_dir):
        k = fold_dir.name.rsplit("_", 1)[1]
        out.append(reload_fold(fold_dir, run_dir / f"valid_df_fold_{k}.csv"))
    return out
