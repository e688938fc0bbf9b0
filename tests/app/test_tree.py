"""Pilot tests of the browser as a tree: folding runs, columns that follow the terminal width, the
filter count, natural and reversed order, runs by size, the cursor staying put while a trainer rotates
checkpoints, and the zoomed detail pane."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from textual.widgets import Static

from tests.fixtures import synthetic as syn
from tests.fixtures.pilot import age_tree, body_text, select, settle, visible_paths
from tui.app import rows
from tui.app.app import make_app
from tui.app.widgets import columns

pytestmark = pytest.mark.slow


def header(app, group: str) -> str:
    return app.browser.get_cell(f"group:{group}", "name").__rich__().plain


def status_line(app) -> str:
    return str(app.query_one("#status", Static).content)


@pytest.fixture
def steps_tree(tmp_path):
    """An HF Trainer output whose checkpoint numbers sort wrongly as text, and a small second run."""
    root = tmp_path / "tree"
    for step in (30, 200, 1000):
        syn.write_hf_checkpoint(root / "hf_out" / f"checkpoint-{step}", step)
    syn.write_hf_model(root / "small" / "model", tokenizer=False)
    age_tree(root)
    return root


async def test_runs_fold_and_unfold_from_the_keyboard(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        hf = [p for p in visible_paths(app) if p.startswith("hf_out/")]
        assert len(hf) == 3 and header(app, "hf_out") == "▾ hf_out (3)"
        await select(app, pilot, "hf_out/checkpoint-4")
        await pilot.press("left")  # on a checkpoint: folds its run, the cursor lands on the header
        assert app.browser.current_key == "group:hf_out"
        assert not [p for p in visible_paths(app) if p.startswith("hf_out/")]
        assert header(app, "hf_out") == "▸ hf_out (3)"
        assert "hf_out" in app.browser.collapsed
        await pilot.press("l")  # unfolds
        assert [p for p in visible_paths(app) if p.startswith("hf_out/")] == hf
        assert header(app, "hf_out") == "▾ hf_out (3)"
        await pilot.press("l")  # on an open run: steps into it
        assert app.browser.current_key == hf[0]
        await pilot.press("h", "enter")  # enter on a header toggles it
        assert [p for p in visible_paths(app) if p.startswith("hf_out/")] == hf
        await pilot.press("enter")
        assert not [p for p in visible_paths(app) if p.startswith("hf_out/")]
        await pilot.press("plus")  # everything open again
        assert len(visible_paths(app)) == len(app.store.infos)
        await pilot.press("minus")  # everything folded: only run headers, cursor on its run
        assert visible_paths(app) == []
        assert app.browser.row_count == len({k for k in app.browser.collapsed})
        assert app.browser.current_key == "group:hf_out"
        await pilot.press("equals_sign")
        assert len(visible_paths(app)) == len(app.store.infos)


async def test_a_folded_run_stays_folded_while_the_scan_streams_rows_into_it(tree):
    app = make_app(tree, poll_interval=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "hf_out/checkpoint-4")
        await pilot.press("h")
        syn.write_hf_checkpoint(tree / "hf_out" / "checkpoint-8", 8)
        for _ in range(150):  # up to 15 s: a loaded 2-core CI box polls slowly
            await pilot.pause(0.1)
            if "hf_out/checkpoint-8" in app.store.infos:
                break
        await settle(app, pilot)
        assert header(app, "hf_out") == "▸ hf_out (4)"
        assert "hf_out/checkpoint-8" not in visible_paths(app)


@pytest.mark.parametrize("width", [60, 80, 120, 200])
async def test_columns_reflow_on_every_resize(tree, width):
    app = make_app(tree, poll_interval=0)
    start = 200 if width < 120 else 60  # arrive from the other extreme
    async with app.run_test(size=(start, 30)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "broken/bad_model")
        await pilot.resize_terminal(width, 30)
        await settle(app, pilot)
        browser = app.browser
        keys = [c.key for c in browser.ordered_columns]
        assert keys == [c.key for c in columns.layout(width - 2)]
        assert {"name", "kind", "status"} <= set(keys)
        # what the table draws fits the terminal: nothing is pushed off the right edge
        drawn = sum(c.get_render_width(browser) for c in browser.ordered_columns)
        assert drawn <= width - 2, keys
        name_width = browser.columns["name"].width
        if width >= 120:
            assert "params" in keys and "step" in keys
            assert name_width >= 40  # widening gives the names room
        if width == 60:
            assert 8 <= name_width < 30  # cut, but shown
        assert browser.current_key == "broken/bad_model"  # a rebuild keeps the cursor
        lines = [strip.text for strip in app.screen._compositor.render_strips()]
        line = next(text for text in lines if "bad_model" in text)
        kind = rows.KIND_SHORT[app.store.infos["broken/bad_model"].kind]
        assert "✖ broken" in line and kind in line, line


async def test_params_column_shows_the_shortened_count(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(app, pilot)
        info = app.store.infos["run1/tiny-bert_fold_0"]
        assert info.parameters
        from tui.core.text import format_count

        cell = app.browser.get_cell("run1/tiny-bert_fold_0", "params").plain
        assert cell == format_count(info.parameters)


async def test_status_line_counts_what_the_filter_shows(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        total = len(app.store.infos)
        assert f"{total} checkpoints" in status_line(app)
        await pilot.press("slash", *"bad_model", "enter")
        await settle(app, pilot)
        assert visible_paths(app) == ["broken/bad_model"]
        assert f"1/{total} checkpoints" in status_line(app)
        await pilot.press("slash", *["backspace"] * 9, "escape")
        assert f"· {total} checkpoints" in f"· {status_line(app)}"


async def test_natural_then_reversed_order(steps_tree):
    app = make_app(steps_tree, poll_interval=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        names = ["hf_out/checkpoint-30", "hf_out/checkpoint-200", "hf_out/checkpoint-1000"]
        assert visible_paths(app) == [*names, "small/model"]
        await pilot.press("R")
        assert app.browser.reverse and "reversed" in status_line(app)
        assert visible_paths(app) == ["small/model", *reversed(names)]
        order = [app.browser.get_row_at(i)[0].key for i in range(app.browser.row_count)]
        assert order[0] == "group:small" and order[2] == "group:hf_out"  # headers stay above their rows


async def test_size_sort_orders_runs_by_their_total_size(steps_tree):
    syn.write_hf_model(steps_tree / "zz_big" / "model", layers=12)
    age_tree(steps_tree)
    app = make_app(steps_tree, poll_interval=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        runs = [k for k in (app.browser.get_row_at(i)[0].key for i in range(app.browser.row_count))]
        assert [k for k in runs if k.startswith("group:")] == ["group:hf_out", "group:small", "group:zz_big"]
        app.browser.set_sort("size")
        await settle(app, pilot)
        keys = [app.browser.get_row_at(i)[0].key for i in range(app.browser.row_count)]
        groups = [k.removeprefix("group:") for k in keys if k.startswith("group:")]
        totals = [sum(i.size_bytes for i in app.store.of_run(g)) for g in groups]
        assert totals == sorted(totals, reverse=True)


async def test_the_cursor_stays_on_its_checkpoint_while_the_trainer_rotates(steps_tree):
    root = steps_tree
    app = make_app(root, poll_interval=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "hf_out/checkpoint-200")
        # save_total_limit: a new checkpoint appears, the oldest (above the cursor) is removed
        syn.write_hf_checkpoint(root / "hf_out" / "checkpoint-2000", 2000)
        shutil.rmtree(root / "hf_out" / "checkpoint-30")
        for _ in range(50):
            await pilot.pause(0.1)
            if "hf_out/checkpoint-30" not in app.store.infos and "hf_out/checkpoint-2000" in app.store.infos:
                break
        await settle(app, pilot)
        assert app.browser.current_key == "hf_out/checkpoint-200"
        # the cursor's own row goes: it lands on the nearest checkpoint of the same run
        shutil.rmtree(root / "hf_out" / "checkpoint-200")
        for _ in range(50):
            await pilot.pause(0.1)
            if "hf_out/checkpoint-200" not in app.store.infos:
                break
        await settle(app, pilot)
        assert app.browser.current_key == "hf_out/checkpoint-1000"


async def test_zoom_shows_the_detail_full_screen_and_back(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "hf_out/checkpoint-4")
        await pilot.press("z")
        assert not app.browser.display or app.browser.region.height == 0
        assert app.detail.region.height >= 25
        await pilot.press("5")  # the Training tab, plot included, without scrolling or Tab presses
        await settle(app, pilot)
        plot = app.query_one("#training-plot")
        assert plot.display and plot.region.bottom <= 30 and plot.region.height >= 8
        await pilot.press("escape")
        assert app.browser.region.height > 0 and app.focused is app.browser
        await pilot.press("enter")  # enter on a checkpoint opens it, zoomed
        assert app.browser.region.height == 0
        await pilot.press("z")
        assert app.focused is app.browser


async def test_a_run_a_live_trainer_writes_is_marked_until_its_trainer_dies(tree):
    lock = tree / "run1" / ".lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    app = make_app(tree, poll_interval=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert app.browser.get_cell("group:run1", "status").plain == "● live"
        assert app.browser.get_cell("group:hf_out", "status").plain == ""
        app.browser.move_to("group:run1")
        await settle(app, pilot)
        assert f"held by pid {os.getpid()}" in body_text(app, "overview")
        # the trainer is killed: its lock stays, only the pid says it is gone; no folder changes
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
        lock.write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename}))
        os.utime(lock, (1_700_000_000, 1_700_000_000))
        for _ in range(150):  # up to 15 s: a loaded 2-core CI box polls slowly
            await pilot.pause(0.1)
            if app.browser.get_cell("group:run1", "status").plain != "● live":
                break
        assert app.browser.get_cell("group:run1", "status").plain == ""
        await settle(app, pilot)
        assert "held by pid" not in body_text(app, "overview")
