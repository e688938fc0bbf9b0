"""bin/train.py through the real launcher: 1 process, and 2 CPU processes under DeepSpeed ZeRO-2/ZeRO-3.

Every run trains a tiny config (120 rows, 2 folds, 2 epochs) on the embedded demo model. Each test
asserts the exact files written, reloads every fold with ``from_pretrained``, recomputes cv.json from
the CSVs, and the 1-process run is compared with the 2-process ones. The resume test SIGKILLs a run
right after its first step checkpoint is committed and checks that the resumed run ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.subprocess_env import cpu_only
from trainer.demo import demo_dataframe
from tui.core.commit import verify
from tui.core.model import Metric

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ROWS = 120
FOLD_FILES = {
    "ckpt_manifest.json",
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "trainer_state.json",
}
RUN_FILES = {
    "run.json",
    "folds.csv",
    "cv.json",
    "oof.csv",
    "valid_df_fold_0.csv",
    "valid_df_fold_1.csv",
    "demo-deberta-v2_fold_0",
    "demo-deberta-v2_fold_1",
    "checkpoints",
}
# 1 process with accumulation 2 sees the same samples per optimizer step as 2 processes with 1; what
# differs is dropout (each rank draws its own masks) and, for bf16, rounding. Over 8 optimizer steps on
# 60 rows that moves OOF metrics by a few hundredths; these bounds are about 3x the spread measured.
AGREE_ACCURACY = 0.10
AGREE_LOG_LOSS = 0.05


def _env(tmp_root: Path) -> dict[str, str]:
    env = cpu_only({
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ACCELERATE_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_"))
    })  # fmt: skip
    env["TORCH_EXTENSIONS_DIR"] = os.environ.get(
        "TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions")
    )
    env["HF_HUB_OFFLINE"] = "1"
    env["ACCELERATE_CONFIG_FILE"] = str(tmp_root / "no-accelerate-config.yaml")  # ignore a user config
    env["PYTHONPATH"] = str(REPO)
    return env


def test_launched_children_never_see_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert _env(tmp_path)["CUDA_VISIBLE_DEVICES"] == ""


def _launch_args(kind: str) -> list[str]:
    base = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_machines",
        "1",
        "--dynamo_backend",
        "no",
    ]
    if kind == "single":
        return base + ["--num_processes", "1", "--mixed_precision", "no"]
    stage, precision = {
        "zero2-bf16": ("2", "bf16"),
        "zero3-fp32": ("3", "no"),
        "zero3-bf16": ("3", "bf16"),
        "zero2-lora": ("2", "no"),
        "zero3-lora": ("3", "no"),
    }[kind]
    return base + [
        "--num_processes",
        "2",
        "--use_deepspeed",
        "--zero_stage",
        stage,
        "--mixed_precision",
        precision,
        "--zero3_save_16bit_model",
        "true",
    ]


def _train_args(data: Path, out: Path, kind: str) -> list[str]:
    grad_accum = "2" if kind == "single" else "1"
    return [
        str(REPO / "bin" / "train.py"),
        "--data.path",
        str(data),
        "--data.id_column",
        "id",
        "--run.output_dir",
        str(out),
        "--run.run_name",
        "run",
        "--folds.num_folds",
        "2",
        "--train.epochs",
        "2",
        "--train.batch_size",
        "8",
        "--train.grad_accum",
        grad_accum,
        "--train.save_every",
        "3",
        "--train.keep_last",
        "1",
        "--train.warmup_steps",
        "2",
    ] + (["--lora.enabled", "true", "--lora.r", "4"] if kind.endswith("lora") else [])


@pytest.fixture(scope="session")
def data_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.csv"
    demo_dataframe(num_rows=ROWS).to_csv(path, index=False)
    return path


def _run(kind: str, data: Path, out: Path, timeout: int = 400) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        _launch_args(kind) + _train_args(data, out, kind),
        cwd=REPO,
        env=_env(out.parent),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{kind} failed:\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="session")
def runs(tmp_path_factory, data_csv) -> dict[str, Path]:
    """One run per launcher configuration, shared by the assertions below."""
    out = {}
    for kind in ("single", "zero2-bf16", "zero3-fp32", "zero3-bf16"):
        root = tmp_path_factory.mktemp(kind)
        _run(kind, data_csv, root)
        out[kind] = root / "run"
    return out


def _sklearn_metrics(frame: pd.DataFrame) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    prob_cols = [c for c in frame.columns if c.startswith("prob_")]
    classes = [c[len("prob_") :] for c in prob_cols]
    probs = frame[prob_cols].to_numpy(dtype=float)
    probs = probs / probs.sum(axis=1, keepdims=True)
    y = frame["label"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    pred = frame["prediction"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    return {
        "accuracy": accuracy_score(y, pred),
        "f1_macro": f1_score(y, pred, average="macro"),
        "log_loss": log_loss(y, probs, labels=list(range(len(classes)))),
    }


@pytest.mark.parametrize("kind", ["single", "zero2-bf16", "zero3-fp32", "zero3-bf16"])
def test_exact_files_written(runs, kind):
    run = runs[kind]
    assert {p.name for p in run.iterdir()} == RUN_FILES  # no .lock, no temp leftovers
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "complete" and record["folds_done"] == [0, 1]
    assert record["world_size"] == (1 if kind == "single" else 2)
    assert (record["deepspeed_config"] is None) == (kind == "single")
    for k in (0, 1):
        fold_dir = run / f"demo-deberta-v2_fold_{k}"
        assert {p.name for p in fold_dir.iterdir()} == FOLD_FILES
        assert verify(fold_dir, check_hashes=True) == []
        ckpts = run / "checkpoints" / f"fold_{k}"
        steps = sorted(p.name for p in ckpts.iterdir() if p.name.startswith("step_"))
        assert "step_6" in steps and len(steps) <= 2  # keep_last 1, plus the best when it differs
        assert {p.name for p in ckpts.iterdir()} == set(steps) | {"best_valid.csv"}
        for step in steps:
            assert verify(ckpts / step) == []
        state = json.loads((fold_dir / "trainer_state.json").read_text())
        assert state["best_model_checkpoint"] == "." and state["global_step"] == state["best_global_step"]
    folds = pd.read_csv(run / "folds.csv")
    assert list(folds.columns) == ["row", "id", "fold"] and len(folds) == ROWS


@pytest.mark.parametrize("kind", ["single", "zero3-fp32"])
def test_inspection_core_reads_what_the_trainer_wrote(runs, kind):
    """The other side of docs/FORMAT.md: `ckpt-tui ls` reports each fold folder as the trainer wrote it."""
    from tui.core.scan import scan
    from tui.core.summaries import last_evaluation

    run = runs[kind]
    infos = {info.path: info for info in scan(run.parent)}
    cv = json.loads((run / "cv.json").read_text())
    for k in (0, 1):
        info = infos[f"run/demo-deberta-v2_fold_{k}"]
        state = json.loads((run / f"demo-deberta-v2_fold_{k}" / "trainer_state.json").read_text())
        assert (info.kind, info.complete, info.problems, info.best) == ("hf-model", True, [], True)
        assert (info.fold, info.step, info.epoch) == (k, state["best_global_step"], state["epoch"])
        best = state["best_global_step"]
        assert info.metric == Metric("f1_macro", pytest.approx(cv["folds"][str(k)]["f1_macro"]), best)
        assert info.parameters and set(info.dtypes) == {"F32"}
        step_dirs = sorted((run / "checkpoints" / f"fold_{k}").glob("step_*"), key=lambda p: int(p.name[5:]))
        newest_best = json.loads((step_dirs[-1] / "train_state.json").read_text())["best_step"]
        for step_dir in step_dirs:
            step = infos[step_dir.relative_to(run.parent).as_posix()]
            assert step.complete and step.step == int(step_dir.name.split("_")[1]) and step.fold == k
            # its own last evaluation (not the best so far), as the manifest and train_state.json say
            train_state = json.loads((step_dir / "train_state.json").read_text())
            own = last_evaluation(train_state["log_history"], "eval_f1_macro", step.step)
            manifest = json.loads((step_dir / "ckpt_manifest.json").read_text())
            assert "best_metric" in manifest
            assert step.metric == (Metric("f1_macro", own[0], own[1]) if own else None)
            assert step.best == (step.step == newest_best)  # the newest state's best step is marked


@pytest.mark.parametrize("kind", ["single", "zero2-bf16", "zero3-fp32", "zero3-bf16"])
def test_folds_reload_and_cv_recomputes(runs, kind):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run = runs[kind]
    cv = json.loads((run / "cv.json").read_text())
    frames = {k: pd.read_csv(run / f"valid_df_fold_{k}.csv") for k in (0, 1)}
    folds_csv = pd.read_csv(run / "folds.csv")
    for k, frame in frames.items():
        assert set(frame["id"]) == set(folds_csv.loc[folds_csv["fold"] == k, "id"])
        assert list(frame.columns[:4]) == ["id", "text", "label", "prediction"]
        fold_dir = run / f"demo-deberta-v2_fold_{k}"
        model = AutoModelForSequenceClassification.from_pretrained(fold_dir, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(fold_dir)
        assert model.config.id2label == {0: "cooking", 1: "sports", 2: "tech"}
        model.eval()
        with __import__("torch").no_grad():
            logits = model(**tok(frame["text"].tolist()[:8], padding=True, return_tensors="pt")).logits
        probs = logits.float().softmax(-1).numpy()
        saved = frame[["prob_cooking", "prob_sports", "prob_tech"]].to_numpy()[:8]
        atol = 2e-2 if "bf16" in kind else 1e-4  # bf16 run: saved bf16 weights, evaluated in bf16 there
        np.testing.assert_allclose(probs, saved, atol=atol)
        for name, value in _sklearn_metrics(frame).items():
            assert cv["folds"][str(k)][name] == pytest.approx(value, abs=1e-9)
    oof = pd.read_csv(run / "oof.csv")
    assert list(oof.columns)[-1] == "fold" and len(oof) == ROWS
    for name, value in _sklearn_metrics(oof).items():
        assert cv["oof"][name] == pytest.approx(value, abs=1e-9)
        per_fold = [cv["folds"][k][name] for k in ("0", "1")]
        assert cv["mean"][name] == pytest.approx(np.mean(per_fold))
        assert cv["std"][name] == pytest.approx(np.std(per_fold))
    try:
        from tui.core.metrics import compute_metrics
    except ImportError:
        return
    ours = compute_metrics(run)
    for name in ("accuracy", "f1_macro", "log_loss"):
        assert ours["oof"][name] == pytest.approx(cv["oof"][name], abs=1e-9)


@pytest.mark.parametrize("kind", ["zero2-bf16", "zero3-fp32", "zero3-bf16"])
def test_one_and_two_processes_agree(runs, kind):
    one = json.loads((runs["single"] / "cv.json").read_text())["oof"]
    two = json.loads((runs[kind] / "cv.json").read_text())["oof"]
    assert abs(one["accuracy"] - two["accuracy"]) <= AGREE_ACCURACY, (one, two)
    assert abs(one["log_loss"] - two["log_loss"]) <= AGREE_LOG_LOSS, (one, two)


def _weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(folder / "model.safetensors")


def test_resume_after_sigkill_is_exact(tmp_path, data_csv, runs):
    """Kill the single-process run once fold 0's step 3 checkpoint is committed; resume; compare."""
    out = tmp_path / "killed"
    args = _launch_args("single") + _train_args(data_csv, out, "single")
    proc = subprocess.Popen(
        args,
        cwd=REPO,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    mark = out / "run" / "checkpoints" / "fold_0" / "step_3" / "ckpt_manifest.json"
    deadline = time.monotonic() + 300
    while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "run" / "valid_df_fold_1.csv").exists()
    resumed = _run("single", data_csv, out)
    assert "resumed from step_" in resumed.stderr
    reference = runs["single"]
    for k in (0, 1):
        a = _weights(reference / f"demo-deberta-v2_fold_{k}")
        b = _weights(out / "run" / f"demo-deberta-v2_fold_{k}")
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"fold {k} {name}")
    cv_a = json.loads((reference / "cv.json").read_text())
    cv_b = json.loads((out / "run" / "cv.json").read_text())
    assert cv_a == cv_b


@pytest.mark.parametrize("kind", ["zero2-lora", "zero3-lora"])
def test_lora_writes_a_merged_fold_model_and_its_adapter(tmp_path, data_csv, kind):
    """LoRA through the real loop on 2 ranks: the fold folder loads without PEFT, and the adapter kept
    beside it, applied to the base model, gives the same logits. Under ZeRO-3 the base model is built
    partitioned and PEFT wraps partitioned weights; the gathered save must still merge correctly."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _run(kind, data_csv, tmp_path)
    run = tmp_path / "run"
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    base_dir = tmp_path / "_demo" / "model"
    for k in (0, 1):
        fold_dir = run / f"demo-deberta-v2_fold_{k}"
        assert {p.name for p in fold_dir.iterdir()} == FOLD_FILES | {"adapter"}
        assert verify(fold_dir, check_hashes=True) == []
        merged = AutoModelForSequenceClassification.from_pretrained(fold_dir, local_files_only=True).eval()
        assert not any("lora" in key for key in merged.state_dict())
        def base():
            return AutoModelForSequenceClassification.from_pretrained(base_dir, local_files_only=True).eval()

        adapted = PeftModel.from_pretrained(base(), fold_dir / "adapter").eval()
        tok = AutoTokenizer.from_pretrained(fold_dir)
        frame = pd.read_csv(run / f"valid_df_fold_{k}.csv")
        batch = tok(frame["text"].tolist()[:8], padding=True, return_tensors="pt")
        with torch.no_grad():
            ours, via_adapter, untrained = (m(**batch).logits for m in (merged, adapted, base()))
        torch.testing.assert_close(ours, via_adapter, rtol=0, atol=1e-4)
        assert (ours - untrained).abs().max() > 1e-3  # training moved the adapters and the head
        saved = frame[["prob_cooking", "prob_sports", "prob_tech"]].to_numpy()[:8]
        np.testing.assert_allclose(ours.softmax(-1).numpy(), saved, atol=1e-4)


def test_predict_on_two_processes_equals_the_mean_of_fold_probabilities(tmp_path, runs):
    """bin/predict.py under a 2-process launch: rows are split, gathered back in order (37 rows, batch 4:
    the last batch is uneven), and each row's probabilities are the mean of the two fold models'."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run = runs["single"]
    rows = demo_dataframe(num_rows=ROWS + 37).tail(37)
    data = tmp_path / "new.csv"
    rows.to_csv(data, index=False)
    out = tmp_path / "pred.csv"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    env = {**_env(tmp_path), "ACCELERATE_USE_CPU": "1"}  # PLATFORM_NOTES: plain 2-process CPU launch
    cmd = launch + [str(REPO / "bin" / "predict.py"), str(run), str(data), "-o", str(out), "--batch-size", "4"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "predicting 37 rows with 2 fold models on 2 processes" in proc.stderr

    expected = []
    for k in (0, 1):
        folder = run / f"demo-deberta-v2_fold_{k}"
        model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True).eval()
        batch = AutoTokenizer.from_pretrained(folder)(rows["text"].tolist(), padding=True, return_tensors="pt")
        with torch.no_grad():
            expected.append(model(**batch).logits.softmax(-1).numpy())
    written = pd.read_csv(out)
    assert written["id"].tolist() == rows["id"].tolist()
    probs = written[["prob_cooking", "prob_sports", "prob_tech"]].to_numpy()
    np.testing.assert_allclose(probs, (expected[0] + expected[1]) / 2, rtol=0, atol=1e-5)
