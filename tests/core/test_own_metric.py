"""Resumable step checkpoints show and rank their own last evaluation, not the fold's best so far; the
best one is marked ``best``. Both manifest layouts are read: the current one (``metric`` = own,
``best_metric`` = best so far) and the older one (``metric`` = best so far, no ``best_metric``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.synthetic import write_accelerate_state, write_json, write_manifest
from trainer.checkpoint import step_manifest_fields
from tui.core import summaries
from tui.core.actions import plan_prune
from tui.core.model import Metric
from tui.core.scan import describe, scan

# The run of the bug report: the best evaluation was at step 108; later steps evaluated lower.
EVALS = {60: 0.85, 108: 0.912, 180: 0.8662, 200: 0.874}
SAVES = (60, 108, 180, 200)


def _train_state(step: int, evals: dict[int, float]) -> dict:
    """train_state.json as trainer/loop.py's FoldState writes it at ``step``."""
    history: list[dict] = []
    best, best_step = None, None
    for s in range(1, step + 1):
        history.append({"step": s, "epoch": s / 100, "loss": 1.0 / s, "learning_rate": 1e-5})
        if s in evals:
            history.append({"step": s, "epoch": s / 100, "eval_f1_macro": evals[s], "eval_accuracy": 0.5})
            if best is None or evals[s] > best:
                best, best_step = evals[s], s
    return {
        "fold": 0, "global_step": step, "epoch": 1, "batches_consumed_in_epoch": step, "best_metric": best,
        "best_step": best_step, "patience_left": 3, "last_eval_step": max(e for e in evals if e <= step),
        "metric_name": "f1_macro", "log_history": history,
    }  # fmt: skip


def _run(root: Path, *, old_manifests: bool, evals=EVALS, saves=SAVES) -> Path:
    run = root / "run1"
    write_json(run / "run.json", {"format": "ckpt-tui/run/1", "metric": "f1_macro"})
    for step in saves:
        folder = run / "checkpoints" / "fold_0" / f"step_{step}"
        state = _train_state(step, evals)
        write_accelerate_state(folder, train_state=state)
        if old_manifests:  # what the trainer wrote before: the best so far as "metric"
            fields = {"step": step, "fold": 0, "best_step": state["best_step"],
                      "metric": {"name": "f1_macro", "value": state["best_metric"]}}  # fmt: skip
        else:
            fields = step_manifest_fields(step, 0, state)
        write_manifest(folder, kind="step-checkpoint", **fields)
    return run


@pytest.mark.parametrize("old_manifests", [False, True])
def test_step_checkpoints_show_their_own_evaluation_and_the_best_is_marked(tmp_path, old_manifests):
    _run(tmp_path, old_manifests=old_manifests)
    got = {i.path.rsplit("/", 1)[-1]: i for i in scan(tmp_path)}
    for step in SAVES:
        assert got[f"step_{step}"].metric == Metric("f1_macro", EVALS[step], step)
    assert {name for name, i in got.items() if i.best} == {"step_108"}
    # inspect's one-path view agrees with the scan
    one = describe(tmp_path, tmp_path / "run1/checkpoints/fold_0/step_180")
    assert one.metric == Metric("f1_macro", 0.8662, 180) and not one.best


def test_prune_ranks_step_checkpoints_by_their_own_evaluation(tmp_path):
    _run(tmp_path, old_manifests=False)
    plan = plan_prune(tmp_path, scan(tmp_path), keep=2, metric="f1_macro", clock=lambda: 4e9)
    # Top 2 by own f1: step_108 (0.912) and step_200 (0.874). Ranked on the best so far, every step from
    # 108 on would tie at 0.912 and step_180 would survive instead of step_60 going.
    assert sorted(i.path.rsplit("/", 1)[-1] for i in plan.items) == ["step_180", "step_60"]


def test_a_save_between_evaluations_shows_the_evaluation_before_it(tmp_path):
    _run(tmp_path, old_manifests=False, evals={50: 0.7, 100: 0.8}, saves=(75, 120))
    got = {i.path.rsplit("/", 1)[-1]: i for i in scan(tmp_path)}
    assert got["step_75"].metric == Metric("f1_macro", 0.7, 50)
    assert got["step_120"].metric == Metric("f1_macro", 0.8, 100)


def test_manifest_fields_carry_own_and_best_and_null_before_any_evaluation():
    fields = step_manifest_fields(180, 0, _train_state(180, EVALS))
    assert fields["metric"] == {"name": "f1_macro", "value": 0.8662, "step": 180}
    assert fields["best_metric"] == {"name": "f1_macro", "value": 0.912, "step": 108}
    early = step_manifest_fields(10, 0, {"metric_name": "f1_macro", "best_metric": None, "log_history": []})
    assert early["metric"] is None and "best_metric" in early and early["best_metric"] is None


def test_last_evaluation_takes_the_newest_entry_at_or_before_the_step():
    history = [{"step": 10, "eval_x": 1.0}, {"step": 20, "loss": 3.0}, {"step": 20, "eval_x": 2.0},
               {"step": 30, "eval_x": 3.0}, {"step": "bad", "eval_x": 9.0}, {"step": 25, "eval_x": True}]  # fmt: skip
    assert summaries.last_evaluation(history, "eval_x", 25) == (2.0, 20)
    assert summaries.last_evaluation(history, "eval_x", 5) is None
    assert summaries.last_evaluation(history, None, 25) is None
    assert summaries.last_evaluation("not a list", "eval_x", 25) is None
