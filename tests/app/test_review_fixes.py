"""Pilot tests for what a keyboard user trips over: bursts after `/`, tab keys, error lines, odd names,
streaming order and where the cursor starts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from textual import events
from textual.widgets import Input, TabbedContent

from tests.app.conftest import age_tree, settle
from tests.app.test_app import body_text, select
from tests.fixtures import synthetic as syn
from tui.app.app import make_app
from tui.core.model import CheckpointInfo

REPO_ROOT = Path(__file__).resolve().parents[2]


async def burst(app, pilot, text: str) -> None:
    """Keys as a terminal delivers a paste or a fast typist over SSH: all queued before any is handled."""
    names = {"/": "slash", " ": "space", "_": "underscore", "-": "minus", "\b": "backspace"}
    for char in text:
        app.post_message(events.Key(names.get(char, char), char))
    await settle(app, pilot)


async def test_keys_typed_in_one_burst_after_slash_reach_the_filter(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        # every letter of "step" but "e" is a binding: s sorts, t-, p opens a prune plan
        await burst(app, pilot, "/steps")
        box = app.query_one("#filter", Input)
        assert box.value == "steps"
        assert app.browser.sort_by == "name"
        assert type(app.screen).__name__ != "ConfirmModal"
        assert app.browser.filter_text == "steps"
        await burst(app, pilot, "\b\b\b\b\b\b")
        await burst(app, pilot, "fold_0")
        # "/" inside the filter box is a character (paths have slashes), not "open the filter" again
        await burst(app, pilot, "/step")
        assert box.value == "fold_0/step"
        assert app.browser.visible_paths() == [
            "run1/checkpoints/fold_0/step_4",
            "run1/checkpoints/fold_0/step_8",
        ]


async def test_slash_in_the_promote_box_is_a_character(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "run1/tiny-bert_fold_1")
        await pilot.press("P")
        await settle(app, pilot)
        await burst(app, pilot, "exports/best")
        assert type(app.screen).__name__ == "PromoteScreen"
        assert app.screen.query_one(Input).value == "exports/best"
        assert not app.query_one("#filter", Input).has_class("-shown")


async def test_detail_tabs_switch_from_the_keyboard(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "hf_out/checkpoint-4")
        tabs = app.query_one("#detail-tabs", TabbedContent)
        assert tabs.active == "tab-overview"
        for key, tab in [("2", "config"), ("right_square_bracket", "tokenizer"), ("5", "training")]:
            await pilot.press(key)
            assert tabs.active == f"tab-{tab}", key
        assert "global_step" in body_text(app, "training")
        await pilot.press("6", "right_square_bracket")  # wraps to the first tab
        assert tabs.active == "tab-overview"
        await pilot.press("left_square_bracket")  # and back to the last
        assert tabs.active == "tab-files"
        assert app.focused is app.browser  # switching tabs never steals the table's focus
        # discoverable: the Footer shows "]", the help screen lists the number keys
        shown = {b.binding.key for b in app.active_bindings.values() if b.binding.show}
        assert {"right_square_bracket", "question_mark", "slash"} <= shown
        await pilot.press("question_mark")
        keys = [str(cell) for cell in app.screen.query_one("#help-keys").content.columns[0]._cells]
        assert {"1", "2", "3", "4", "5", "6", "[", "]", "g/home", "G/end"} <= set(keys)


async def test_error_notice_is_one_clean_line_relative_to_root(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "hf_out/checkpoint-4")
        await pilot.press("f")  # hf_out has no fold CSVs
        await settle(app, pilot)
        severity, text = app.notices[-1]
        assert severity == "warning"
        assert "hf_out: no valid_df_fold_<k>.csv files" in text
        assert str(tree) not in text and "Error" not in text and "\n" not in text


async def test_undecodable_file_names_are_shown_escaped_and_can_be_deleted(tmp_path):
    root = tmp_path / "tree"
    odd = os.fsdecode(b"run\xff")  # a name that is not UTF-8: Python keeps the byte as a surrogate
    syn.write_hf_model(root / odd / "model")
    syn.write_hf_model(root / "ok" / "model")
    age_tree(root)
    app = make_app(root, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        path = f"{odd}/model"
        assert path in app.browser.infos
        await select(app, pilot, path)
        assert "run\\xff/model" in body_text(app, "overview")
        header = app.browser.get_cell(f"group:{odd}", "name").__rich__().plain
        assert header == "▾ run\\xff"
        screen = app.export_screenshot()
        assert "\udcff" not in screen and "run\\xff" in screen
        await pilot.press("d")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ConfirmModal"
        assert "\udcff" not in app.export_screenshot()
        await pilot.press("y")
        await settle(app, pilot)
        assert app.notices[-1][0] == "information" and "Deleted 1 item" in app.notices[-1][1]
        assert path not in app.browser.infos
    assert not (root / odd / "model").exists()


async def test_the_cursor_starts_on_the_first_row(tmp_path):
    # 40 checkpoints: several batches, later ones sorting above the first rows that came in
    syn.make_tree(tmp_path / "t", 40)
    app = make_app(tmp_path / "t", poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert app.browser.cursor_row == 0
        assert app.browser.current_key == "group:group_0000"
        assert "group_0000" in body_text(app, "overview")  # the detail follows the row shown
        await pilot.press("G")
        assert app.browser.cursor_row == app.browser.row_count - 1
        await pilot.press("g")
        assert app.browser.cursor_row == 0
        await pilot.press("j", "j")
        assert app.browser.cursor_row == 2


def fake(path: str, size: int = 1) -> CheckpointInfo:
    return CheckpointInfo(path=path, kind="hf-model", complete=True, size_bytes=size)


async def test_streaming_sorts_only_when_rows_land_out_of_order(tmp_path):
    app = make_app(tmp_path, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        browser = app.browser
        sorts = []
        original = browser.sort
        browser.sort = lambda *a, **k: (sorts.append(1), original(*a, **k))[1]
        browser.upsert([fake("a/m1"), fake("a/m2")])
        browser.upsert([fake("a/m3"), fake("b/m1")])  # in order: appended, no re-sort
        assert sorts == []
        browser.upsert([fake("a/m0", 5)])  # lands above a/m1: one re-sort
        assert sorts == [1]
        order = [browser.get_row_at(i)[0].key for i in range(browser.row_count)]
        assert order == ["group:a", "a/m0", "a/m1", "a/m2", "a/m3", "group:b", "b/m1"]
        assert browser.get_cell("group:a", "step").plain == "4"
        assert browser.get_cell("group:a", "size").plain == "8B"
        browser.forget(["a/m2"])
        assert browser.get_cell("group:a", "step").plain == "3"
        browser.forget(["b/m1"])
        assert "group:b" not in browser.rows


def test_the_training_plot_library_is_not_imported_at_start_up():
    script = textwrap.dedent(
        """
        import sys
        import tui.app.app, tui.cli.app_cmd
        print("LOADED=" + ",".join(m for m in ("plotext", "textual_plotext", "pandas") if m in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("LOADED="), out.stdout
