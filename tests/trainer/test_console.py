"""trainer.console: a live bar on a terminal, a line every log_every steps elsewhere, warnings once."""

import io
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from trainer.console import StepLog, auto_log_every, make_console

REPO = Path(__file__).resolve().parents[2]


def _run(console, total=72, every=50, per_step=(0.5, 0.25), done=0):
    entries = []
    with StepLog(console, fold=3, total_steps=total, log_every=every, done_steps=done) as log:
        for step in range(done + 1, total + 1):
            for loss in per_step:  # two micro-batches per optimizer step
                log.add_loss(loss)
            entries.append(log.step(step, step / 18, 1e-3, 0.7, samples=32, skipped=0))
        log.print("fold 3 step 72 eval: accuracy 0.9000")
    return entries


def test_off_a_terminal_a_line_every_log_every_steps_and_each_step_in_the_history():
    out = io.StringIO()
    entries = _run(Console(file=out, force_terminal=False, width=40, soft_wrap=True))
    lines = out.getvalue().splitlines()
    assert [line.split(" epoch")[0] for line in lines[:2]] == ["fold 3 step 50/72", "fold 3 step 72/72"]
    assert "loss 0.3750 lr 1.000e-03" in lines[0] and "samples/s" in lines[0] and "left" in lines[0]
    assert lines[2] == "fold 3 step 72 eval: accuracy 0.9000" and len(lines) == 3  # one line each, never wrapped
    assert len(entries) == 72 and entries[0] == {
        "step": 1, "epoch": 1 / 18, "loss": 0.375, "learning_rate": 1e-3, "grad_norm": 0.7,
    }  # fmt: skip


def test_a_resumed_fold_counts_its_lines_from_the_global_step():
    out = io.StringIO()
    _run(Console(file=out, force_terminal=False, soft_wrap=True), total=30, every=10, done=13)
    assert [line.split(" epoch")[0] for line in out.getvalue().splitlines()[:-1]] == [
        "fold 3 step 20/30", "fold 3 step 30/30",
    ]  # fmt: skip


def test_on_a_terminal_one_live_bar_and_no_step_lines():
    out = io.StringIO()
    entries = _run(Console(file=out, force_terminal=True, width=160))
    text = out.getvalue()
    assert len(entries) == 72
    assert "fold 3" in text and "72/72" in text and "samples/s" in text and "loss 0.3750" in text
    assert "step 50/72" not in text  # the bar replaces the lines
    assert "fold 3 step 72 eval: accuracy 0.9000" in text


def test_only_the_main_process_prints():
    console = make_console(is_main=False)
    assert console.quiet
    with StepLog(console, 0, 10, 1) as log:
        assert log.progress is None


@pytest.mark.parametrize(("steps_per_epoch", "every"), [(18, 50), (500, 50), (1250, 125), (10_000, 1000)])
def test_auto_log_every_is_about_ten_lines_per_epoch_at_most_one_per_50_steps(steps_per_epoch, every):
    assert auto_log_every(steps_per_epoch) == every


def test_a_repeated_library_warning_is_shown_once_and_only_by_the_main_process():
    """Each filter change resets Python's warning registry: without the 'once' filter a library warning
    comes back after every such change (it did, twice per evaluation)."""
    code = (
        "import sys, warnings; from trainer.console import show_warnings_once; "
        "show_warnings_once(sys.argv[1] == 'main')\n"
        "def lib(): warnings.warn('old API', FutureWarning)\n"
        "for _ in range(3):\n"
        "    lib(); warnings.warn('a user warning')\n"
        "    with warnings.catch_warnings(): warnings.simplefilter('ignore')\n"
    )
    shown = {}
    for role in ("main", "other"):
        proc = subprocess.run(
            [sys.executable, "-c", code, role], capture_output=True, text=True, check=True,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        shown[role] = proc.stderr
    assert shown["main"].count("FutureWarning: old API") == 1
    assert shown["main"].count("UserWarning: a user warning") == 1
    assert "FutureWarning" not in shown["other"] and shown["other"].count("UserWarning") == 1
