"""Pilot tests of browsing: the table, the detail tabs, sort, filter, marks and diff, fold metrics,
help, live refresh. Keys go in, state and screen come out."""

from __future__ import annotations

import json
import os

import pytest
from textual.widgets import Input, Static, TabbedContent

from tests.fixtures import synthetic as syn
from tests.fixtures.pilot import age_tree, body_of, body_text, burst, select, settle, visible_paths
from tui.app import tasks
from tui.app.app import make_app
from tui.core.model import CheckpointInfo
from tui.core.scan import scan


async def test_browse_lists_what_the_scan_finds_grouped_by_run(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        shown = visible_paths(app)
        assert sorted(shown) == sorted(i.path for i in scan(tree))
        # grouped: every run's rows are contiguous
        runs = [p.split("/")[0] for p in shown]
        assert runs == sorted(runs, key=runs.index)
        assert app.browser.row_count == len(shown) + len(set(runs))
        # rows are added in bulk and not measured (fixed widths, one line each): the table still knows
        # its size, a header line and a line per row, and its columns keep the widths laid out
        assert app.browser.virtual_size.height == app.browser.row_count + 1
        assert [c.get_render_width(app.browser) - 2 for c in app.browser.ordered_columns] == [
            c.width for c in app.browser.layout_columns
        ]
        status = str(app.query_one("#status", Static).content)
        assert f"{len(shown)} checkpoints" in status


async def test_the_first_scan_reads_in_a_process_of_its_own(tree, monkeypatch):
    from tui.core import subscan

    monkeypatch.setenv("CKPT_TUI_PROCESSES", "2")
    started: list[str] = []
    real = subscan._command
    monkeypatch.setattr(subscan, "_command", lambda root: started.append(root) or real(root))
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert sorted(visible_paths(app)) == sorted(i.path for i in scan(tree))
        assert {p: i.to_json() for p, i in app.store.infos.items()} == {i.path: i.to_json() for i in scan(tree)}
        await pilot.press("r")  # a refresh scans here: the child was for the first scan only
        await settle(app, pilot)
        assert sorted(visible_paths(app)) == sorted(i.path for i in scan(tree))
    assert started == [os.path.abspath(tree)]


async def test_each_tab_renders_the_selected_checkpoint(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "hf_out/checkpoint-4")
        tabs = app.query_one("#detail-tabs", TabbedContent)
        expected = {
            "overview": "hf_out/checkpoint-4",
            "config": "model_type",
            "weights": "parameters",
            "training": "global_step",
            "files": "trainer_state.json",
        }
        for tab, text in expected.items():
            tabs.active = f"tab-{tab}"
            await pilot.pause()
            assert tabs.active == f"tab-{tab}"
            assert text in body_text(app, tab), tab
        assert app.query_one("#training-plot").display  # loss + eval metric plotted
        await select(app, pilot, "run1/tiny-bert_fold_0")
        tabs.active = "tab-tokenizer"
        await pilot.pause()
        assert "No tokenizer" not in body_text(app, "tokenizer")


async def test_broken_folder_shows_its_problem_in_row_and_overview(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        info = app.store.infos["broken/bad_model"]
        assert not info.complete and info.problems
        assert "broken" in app.browser.get_cell("broken/bad_model", "status").plain
        await select(app, pilot, "broken/bad_model")
        overview = body_text(app, "overview")
        assert "broken" in overview and "truncat" in overview.lower()


async def test_hostile_entries_do_not_crash_the_app(tree):
    hostile = tree / "hostile"
    syn.broken_huge_header(hostile / "huge")
    syn.broken_bad_header_json(hostile / "badjson")
    syn.write_evil_pickle(hostile / "evil" / "model.pt", tree / "PWNED")
    (hostile / "loop").mkdir()
    os.symlink(hostile / "loop", hostile / "loop" / "again")
    os.symlink("/etc", hostile / "outside")
    age_tree(tree)
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        for path in [p for p in visible_paths(app) if p.startswith("hostile/")]:
            await select(app, pilot, path)
            assert "Select a checkpoint" not in body_text(app, "overview")
        assert app.browser.get_cell("hostile/huge", "status").plain.endswith("broken")
        assert app.browser.get_cell("hostile/evil/model.pt", "status").plain.endswith("unsafe")
    assert not (tree / "PWNED").exists()


@pytest.mark.slow
async def test_sort_cycles_and_filter_narrows(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        seen = []
        for _ in range(4):
            await pilot.press("s")
            seen.append(app.browser.sort_by)
        assert seen == ["step", "metric", "size", "name"]
        await pilot.press("s", "s", "s")  # size: largest first inside each run
        hf = [p for p in visible_paths(app) if p.startswith("hf_out/")]
        sizes = [app.store.infos[p].size_bytes for p in hf]
        assert sizes == sorted(sizes, reverse=True)
        await pilot.press("slash", *"fold_1", "enter")
        await settle(app, pilot)
        assert visible_paths(app) and all("fold_1" in p for p in visible_paths(app))
        assert app.focused is app.browser
        await pilot.press("slash", *["backspace"] * 6, "escape")
        assert len(visible_paths(app)) == len(app.store.infos)


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
        assert visible_paths(app) == [
            "run1/checkpoints/fold_0/step_4",
            "run1/checkpoints/fold_0/step_8",
        ]


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


async def test_the_cursor_starts_on_the_first_row(tmp_path, monkeypatch):
    # 40 checkpoints, a batch each: later ones sort above the first rows that came in
    batched = tasks.batched
    monkeypatch.setattr(tasks, "batched", lambda items, **kw: batched(items, **kw, interval=0))
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


async def test_the_app_freezes_what_start_up_built_and_unfreezes_it_at_exit(tree):
    import gc

    gc.unfreeze()
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert gc.get_freeze_count() > 0  # full collections skip the app's long-lived objects
    assert gc.get_freeze_count() == 0  # ... which a process running further apps can collect again


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
        browser.show(app.store.upsert([fake("a/m1"), fake("a/m2")]))
        browser.show(app.store.upsert([fake("a/m3"), fake("b/m1")]))  # in order: appended, no re-sort
        assert sorts == []
        browser.show(app.store.upsert([fake("a/m0", 5)]))  # lands above a/m1: one re-sort
        assert sorts == [1]
        order = [browser.get_row_at(i)[0].key for i in range(browser.row_count)]
        assert order == ["group:a", "a/m0", "a/m1", "a/m2", "a/m3", "group:b", "b/m1"]
        assert browser.get_cell("group:a", "name").__rich__().plain == "▾ a (4)"
        assert browser.get_cell("group:a", "step").plain == ""  # the count is in the name cell
        assert browser.get_cell("group:a", "size").plain == "8B"
        browser.drop(app.store.forget(["a/m2"]))
        assert browser.get_cell("group:a", "name").__rich__().plain == "▾ a (3)"
        browser.drop(app.store.forget(["b/m1"]))
        assert "group:b" not in browser.rows


async def test_the_run_header_best_is_the_min_for_a_ppl_ranked_run(tmp_path):
    root = tmp_path / "tree"
    for name, ppl in (("a", 7.0), ("b", 3.0), ("c", 5.0)):
        syn.write_hf_model(root / "run" / name, tokenizer=False)
        syn.write_manifest(
            root / "run" / name, kind="step-checkpoint", metric={"name": "ppl", "value": ppl}, best_metric=None
        )
    age_tree(root)
    app = make_app(root, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert app.browser.get_cell("group:run", "metric").plain == "3"


async def test_mark_two_and_diff(tree):
    syn.write_hf_model(tree / "other" / "wide", config={"hidden_size": 16}, dtype="BF16")
    age_tree(tree)
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "run1/tiny-bert_fold_0")
        await pilot.press("m")
        await select(app, pilot, "other/wide")
        await pilot.press("m", "D")
        await settle(app, pilot)
        screen = app.screen
        assert type(screen).__name__ == "DiffScreen"
        assert ("hidden_size", 8, 16) in screen.config_diff
        assert any("BF16" in b and "F32" in a for _, a, b in screen.tensor_diff)


@pytest.mark.slow
async def test_fold_metrics_screen_from_a_run(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "run1/tiny-bert_fold_1")
        await pilot.press("f")
        await settle(app, pilot)
        screen = app.screen
        assert type(screen).__name__ == "FoldMetricsScreen"
        table = screen.query_one("#folds-table")
        labels = [table.get_row_at(i)[0] for i in range(table.row_count)]
        assert labels[-2:] == ["OOF", "mean±std"]
        cv = json.loads((tree / "run1" / "cv.json").read_text())
        best = max(cv["folds"], key=lambda k: cv["folds"][k]["f1_macro"])
        assert f"★ {best}" in labels
        await pilot.press("escape")
        assert type(app.screen).__name__ != "FoldMetricsScreen"


async def test_help_lists_every_binding_and_palette_has_every_action(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        text = body_of(app, app.screen.query_one("#help-keys", Static))
        for binding in app.BINDINGS:
            assert binding.description in text
        await pilot.press("escape")
        from tui.app.commands import ActionsProvider

        provider = ActionsProvider(app.screen)
        titles = [t for t, _, _ in provider._entries()]
        assert {b.description for b in app.BINDINGS} <= set(titles)
        assert "Empty trash" in titles


async def test_live_refresh_picks_up_a_new_checkpoint(tree):
    app = make_app(tree, poll_interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert "hf_out/checkpoint-8" not in app.store.infos
        syn.write_hf_checkpoint(tree / "hf_out" / "checkpoint-8", 8)
        for _ in range(150):  # up to 15 s: a loaded 2-core CI box polls slowly
            await pilot.pause(0.1)
            if "hf_out/checkpoint-8" in app.store.infos:
                break
        assert "hf_out/checkpoint-8" in app.store.infos
        assert "hf_out/checkpoint-8" in visible_paths(app)



async def test_live_refresh_sees_a_weights_file_truncated_in_place(tree):
    """No folder mtime changes when a file is rewritten in place: the poll compares the files of the runs
    on screen, and the row turns broken at the next poll (2 s by default; 0.2 s here)."""
    app = make_app(tree, poll_interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        path = "run1/tiny-bert_fold_0"
        assert app.store.infos[path].complete
        await select(app, pilot, path)
        weights = tree / path / "model.safetensors"
        folder_mtime = os.stat(weights.parent).st_mtime_ns
        os.truncate(weights, weights.stat().st_size - 40)
        assert os.stat(weights.parent).st_mtime_ns == folder_mtime
        for _ in range(150):  # up to 15 s: a loaded 2-core CI box polls slowly
            await pilot.pause(0.1)
            if not app.store.infos[path].complete:
                break
        info = app.store.infos[path]
        assert not info.complete and any("truncated" in p for p in info.problems)
        await settle(app, pilot)
        assert "truncated" in body_text(app, "overview")
