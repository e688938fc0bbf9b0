"""Fixtures for the app tests: a small deterministic tree and a helper that waits for the app to settle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures import synthetic as syn

# Old enough that the safety rules ("modified in the last minute") do not see a writer; fixed so that
# snapshot renders never depend on when the test ran.
FIXED_MTIME = 1_700_000_000


def age_tree(root: Path, mtime: float = FIXED_MTIME) -> None:
    """Set every mtime under ``root`` (bottom-up, so folders keep the old time too)."""
    for folder, dirs, files in os.walk(root, topdown=False):
        for name in files + dirs:
            os.utime(Path(folder) / name, (mtime, mtime), follow_symlinks=False)
    os.utime(root, (mtime, mtime))


def build_tree(root: Path) -> Path:
    """One trainer run with 2 folds (fold models, step checkpoints, a promoted export), an HF Trainer
    output with checkpoint-N folders, and one broken folder (a truncated safetensors)."""
    root.mkdir(parents=True, exist_ok=True)
    syn.write_run(root, "run1", folds=2, steps=(4, 8), promote_fold=0)
    hf = root / "hf_out"
    # HF Trainer: each checkpoint's trainer_state knows the best so far; checkpoint-1 (best at step 2) was
    # rotated away by save_total_limit, as in real runs.
    evals = {1: 0.85, 2: 0.8, 4: 0.9, 6: 0.88}
    for step in (2, 4, 6):
        best_step = max((s for s in evals if s <= step), key=evals.get)
        syn.write_hf_checkpoint(
            hf / f"checkpoint-{step}",
            step,
            # an absolute path from where the run was trained (HF writes those); readers resolve it by name
            best_model_checkpoint=f"/old/cluster/hf_out/checkpoint-{best_step}",
            best_metric=evals[best_step],
            evals={s: v for s, v in evals.items() if s <= step},
        )
    syn.broken_truncated(root / "broken" / "bad_model")
    age_tree(root)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "tree")


async def settle(app, pilot, rounds: int = 40) -> None:
    """Wait until scans, inspections and their messages are all done (timers included)."""
    for _ in range(rounds):
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause(0.02)
        if not app.busy:
            await pilot.pause()
            return
    raise AssertionError("the app did not settle")


def screen_text(app) -> str:
    """Every character the app would send to the terminal for the current screen (modals and toasts
    included), one line per terminal row: what a user's terminal interprets."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())
