"""Resuming across engines through the real launcher (docs/TRAINER.md, "Requeued on another node count"):
a DeepSpeed ZeRO-2 or ZeRO-3 run killed after its first step checkpoint resumes without DeepSpeed, and a
run without DeepSpeed resumes under ZeRO-2 or ZeRO-3; the weights and Adam's moments and step carry over (the step count goes
on, not from 0), the fold finishes, its model reloads, and the OOF metrics stay near the uninterrupted run."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_resume_layout import (
    AGREE_ACCURACY,
    AGREE_LOG_LOSS,
    ROWS,
    kill_after_step,
    reference_oof,
    run,
)
from trainer.demo import demo_dataframe

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.csv"
    demo_dataframe(num_rows=ROWS).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("before", "after", "how"),
    [
        (2, None, "written under DeepSpeed, without DeepSpeed"),
        (None, 2, "written without DeepSpeed, under DeepSpeed"),
        (3, None, "written under DeepSpeed, without DeepSpeed"),
        (None, 3, "written without DeepSpeed, under DeepSpeed"),
    ],
    ids=["zero2-to-plain", "plain-to-zero2", "zero3-to-plain", "plain-to-zero3"],
)  # one process each, global batch 16 (8 x 2) both sides
def test_resume_across_engines_carries_the_optimizer_state(
    tmp_path, tmp_path_factory, data_csv, before, after, how
):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "out"
    kill_after_step(data_csv, out, 1, before, 2, "--train.grad_accum", "2")
    resumed = run(data_csv, out, 1, after, "--train.grad_accum", "2")
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-4000:]
    assert f"resumed from step_2 {how} (Adam step 2," in log, log[-4000:]
    run_dir = out / "run"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    fold_dir = run_dir / "checkpoints" / "fold_0"
    assert not [p for p in fold_dir.iterdir() if p.name.startswith(".")]  # no universal temp folder left
    newest = max((p for p in fold_dir.iterdir() if p.name.startswith("step_")), key=lambda p: int(p.name[5:]))
    state = json.loads((newest / "train_state.json").read_text())
    assert (state["world_size"], state["zero_stage"], state["global_step"]) == (1, after, 6)
    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "demo-deberta-v2_fold_0")
    assert model.num_labels >= 2 and (run_dir / "valid_df_fold_0.csv").exists()
    oof = json.loads((run_dir / "cv.json").read_text())["oof"]
    ref = reference_oof(data_csv, tmp_path_factory.getbasetemp(), 1, before or after, "2")
    assert abs(oof["accuracy"] - ref["accuracy"]) <= AGREE_ACCURACY, (oof, ref)
    assert abs(oof["log_loss"] - ref["log_loss"]) <= AGREE_LOG_LOSS, (oof, ref)
