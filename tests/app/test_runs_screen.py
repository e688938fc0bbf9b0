"""The Runs screen: the leaderboard table, two runs compared, folds chosen across runs exported as an
ensemble whose OOF metric the app reports."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.pilot import record_notices, screen_text, settle
from tests.fixtures.runs import write_runs
from tui.app.app import make_app
from tui.core.ensemble import Member, oof_metrics


@pytest.fixture()
def runs_root(tmp_path):
    root = tmp_path / "runs"
    runs = write_runs(root)
    for run in (runs["good"], runs["weak"]):
        for k in range(2):
            (run / f"tiny_fold_{k}").mkdir()  # a fold model folder to name in the spec
    return root


async def _open_runs(app, pilot):
    await settle(app, pilot)
    await pilot.press("L")
    await settle(app, pilot)
    screen = app.screen
    assert type(screen).__name__ == "RunsScreen"
    return screen


def _column(table, name: str) -> list[str]:
    index = [c.label.plain for c in table.ordered_columns].index(name)
    return [str(table.get_row_at(i)[index]) for i in range(table.row_count)]


async def test_runs_table_ranks_runs_like_the_cli(runs_root):
    app = make_app(runs_root, poll_interval=0)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await _open_runs(app, pilot)
        table = screen.query_one("#runs-table")
        assert _column(table, "run") == ["lr3e-5", "kaggle/exp7", "live", "lr1e-4"]
        assert _column(table, "status")[2] == "running" and _column(table, "folds")[2] == "1/2"
        assert "lr" in [c.label.plain for c in table.ordered_columns]
        text = screen_text(app)
        assert "ranked by out-of-fold f1_macro" in text and "folds of lr3e-5" in text
        await pilot.press("escape")
        assert type(app.screen).__name__ != "RunsScreen"


async def test_two_marked_runs_compared(runs_root):
    app = make_app(runs_root, poll_interval=0)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await _open_runs(app, pilot)
        await pilot.press("m", "down", "down", "down", "m", "c")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "RunCompareScreen"
        config = app.screen.query_one("#compare-config")
        keys = {str(config.get_row_at(i)[0]): config.get_row_at(i)[1:] for i in range(config.row_count)}
        assert [str(v) for v in keys["train.lr"]] == ["3e-05", "0.0001"]
        folds = app.screen.query_one("#compare-folds")
        labels = [str(folds.get_row_at(i)[0]) for i in range(folds.row_count)]
        assert labels == ["0", "1", "OOF", "mean ± std"]
        assert str(folds.get_row_at(2)[1]) == f"{screen.board.runs[0].oof:.4f}"


async def test_folds_chosen_across_runs_export_an_ensemble(runs_root, tmp_path):
    app = make_app(runs_root, poll_interval=0)
    async with app.run_test(size=(160, 40)) as pilot:
        notices = record_notices(app)
        screen = await _open_runs(app, pilot)
        await pilot.press("space")  # every fold of the best run
        await pilot.press("down", "down", "down", "tab", "down", "space")  # fold 1 of the weak run
        await settle(app, pilot)
        want = oof_metrics([Member(runs_root / "lr1e-4", 1), Member(runs_root / "lr3e-5", 0),
                            Member(runs_root / "lr3e-5", 1)])  # fmt: skip
        assert screen.oof == want
        assert f"OOF f1_macro {want['f1_macro']:.4f}" in screen_text(app)
        await pilot.press("e")
        await settle(app, pilot)
        box = app.screen.query_one("#export-path")
        box.value = str(tmp_path / "ens.json")
        await pilot.press("enter")
        await settle(app, pilot)
        spec = json.loads((tmp_path / "ens.json").read_text())
        assert spec["oof"] == want
        assert [(m["fold"], m["weight"]) for m in spec["members"]] == [(1, 1 / 3), (0, 1 / 3), (1, 1 / 3)]
        assert any("ens.json" in text and f"{want['f1_macro']:.4f}" in text for _, text in notices)
