"""A few screenshots over the deterministic fixture tree (fixed contents and mtimes, relative ROOT).

Regenerate with `pytest tests/app/test_snapshots.py --snapshot-update`, then look at the SVGs under
tests/app/__snapshots__/ before committing them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.fixtures.pilot import build_tree, frame
from tui.app.app import make_app


@pytest.fixture
def snap_root(monkeypatch):
    # A fixed place, so that nothing on screen depends on where pytest puts tmp_path.
    home = Path(tempfile.gettempdir()) / "ckpt-tui-snapshots"
    shutil.rmtree(home, ignore_errors=True)
    build_tree(home / "tree")
    monkeypatch.chdir(home)  # ROOT is shown as typed: "tree"
    yield "tree"
    shutil.rmtree(home, ignore_errors=True)


def at(path: str, *keys: str, tab: str | None = None):
    async def run_before(pilot) -> None:
        await frame(pilot.app, pilot, path, *keys, tab=tab)

    return run_before


def test_browser_80x24(snap_root, snap_compare):
    app = make_app(snap_root, poll_interval=0)
    assert snap_compare(app, terminal_size=(80, 24), run_before=at("hf_out/checkpoint-4"))


def test_browser_training_120x40(snap_root, snap_compare):
    app = make_app(snap_root, poll_interval=0)
    assert snap_compare(app, terminal_size=(120, 40), run_before=at("hf_out/checkpoint-6", tab="training"))


def test_broken_weights_tab_80x24(snap_root, snap_compare):
    app = make_app(snap_root, poll_interval=0)
    assert snap_compare(app, terminal_size=(80, 24), run_before=at("broken/bad_model", tab="weights"))


def test_confirm_delete_80x24(snap_root, snap_compare):
    app = make_app(snap_root, poll_interval=0)
    assert snap_compare(app, terminal_size=(80, 24), run_before=at("hf_out/checkpoint-2", "d"))


@pytest.mark.slow
def test_fold_metrics_120x40(snap_root, snap_compare):
    app = make_app(snap_root, poll_interval=0)
    assert snap_compare(app, terminal_size=(120, 40), run_before=at("run1/tiny-bert_fold_0", "f"))


def test_help_80x24(snap_root, snap_compare):
    app = make_app(snap_root, poll_interval=0)
    assert snap_compare(app, terminal_size=(80, 24), run_before=at("hf_out/checkpoint-4", "question_mark"))


def test_prune_screen_80x24(snap_root, snap_compare):
    app = make_app(snap_root, poll_interval=0)
    assert snap_compare(app, terminal_size=(80, 24), run_before=at("hf_out/checkpoint-2", "p"))


def test_prune_screen_120x40(snap_root, snap_compare):
    app = make_app(snap_root, poll_interval=0)
    assert snap_compare(app, terminal_size=(120, 40), run_before=at("hf_out/checkpoint-2", "p"))


def test_trash_screen_120x40(snap_root, snap_compare, monkeypatch):
    from tui.core import actions, trash

    monkeypatch.setattr(trash, "utc_now", lambda: "2026-01-02T03:04:05Z")  # the "when" column
    for path, origin in (("hf_out/checkpoint-2", "cli"), ("run1/checkpoints/fold_0/step_4", "app")):
        assert actions.execute(actions.plan_delete(snap_root, [path]), origin=origin).ok
    app = make_app(snap_root, poll_interval=0)
    assert snap_compare(app, terminal_size=(120, 40), run_before=at("hf_out/checkpoint-4", "t"))
