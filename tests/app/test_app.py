"""Pilot tests: drive the real app (make_app) with keys; assert on its state and on the disk."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from textual.widgets import Static, TabbedContent

from tests.app.conftest import FIXED_MTIME, age_tree, settle
from tests.fixtures import synthetic as syn
from tui.app.app import make_app
from tui.core.scan import scan


def digest_tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def body_text(app, tab: str) -> str:
    """What a detail tab shows, as plain text."""
    return body_of(app, app.query_one(f"#body-{tab}", Static))


def body_of(app, static: Static) -> str:
    console = app.console
    with console.capture() as capture:
        console.print(static.content)
    return capture.get()


async def select(app, pilot, path: str) -> None:
    assert app.browser.select_path(path), f"{path} is not a row"
    await settle(app, pilot)


async def test_browse_lists_what_the_scan_finds_grouped_by_run(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        shown = app.browser.visible_paths()
        assert sorted(shown) == sorted(i.path for i in scan(tree))
        # grouped: every run's rows are contiguous
        runs = [p.split("/")[0] for p in shown]
        assert runs == sorted(runs, key=runs.index)
        assert app.browser.row_count == len(shown) + len(set(runs))
        status = str(app.query_one("#status", Static).content)
        assert f"{len(shown)} checkpoints" in status


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
        info = app.browser.infos["broken/bad_model"]
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
        for path in [p for p in app.browser.visible_paths() if p.startswith("hostile/")]:
            await select(app, pilot, path)
            assert "Select a checkpoint" not in body_text(app, "overview")
        assert app.browser.get_cell("hostile/huge", "status").plain.endswith("broken")
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
        hf = [p for p in app.browser.visible_paths() if p.startswith("hf_out/")]
        sizes = [app.browser.infos[p].size_bytes for p in hf]
        assert sizes == sorted(sizes, reverse=True)
        await pilot.press("slash", *"fold_1", "enter")
        await settle(app, pilot)
        assert app.browser.visible_paths() and all("fold_1" in p for p in app.browser.visible_paths())
        assert app.focused is app.browser
        await pilot.press("slash", *["backspace"] * 6, "escape")
        assert len(app.browser.visible_paths()) == len(app.browser.infos)


async def test_delete_confirm_trash_then_undo_is_byte_identical(tree):
    target = tree / "hf_out" / "checkpoint-2"
    before = digest_tree(target)
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "hf_out/checkpoint-2")
        await pilot.press("d")
        await settle(app, pilot)
        modal = app.screen
        assert type(modal).__name__ == "ConfirmModal"
        assert "hf_out/checkpoint-2" in modal.summary and modal.items[0][0] == "hf_out/checkpoint-2"
        assert modal.items[0][1] == sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        await pilot.press("y")
        await settle(app, pilot)
        assert not target.exists()
        entries = [json.loads(p.read_text()) for p in (tree / ".ckpt-trash").glob("*/entry.json")]
        assert [e["original_path"] for e in entries] == ["hf_out/checkpoint-2"]
        assert "hf_out/checkpoint-2" not in app.browser.infos
        await pilot.press("u")
        await settle(app, pilot)
        assert digest_tree(target) == before
        assert "hf_out/checkpoint-2" in app.browser.infos


async def test_cancelled_delete_changes_nothing(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "hf_out/checkpoint-6")
        await pilot.press("d")
        await settle(app, pilot)
        await pilot.press("n")
        await settle(app, pilot)
        assert (tree / "hf_out" / "checkpoint-6").is_dir()
        assert "cancelled" in app.notices[-1][1]


async def refused(app, pilot, path: str, key: str = "d") -> str:
    await select(app, pilot, path)
    await pilot.press(key)
    await settle(app, pilot)
    assert type(app.screen).__name__ != "ConfirmModal", f"{path} was not refused"
    severity, text = app.notices[-1]
    assert severity == "error"
    return text


async def test_refusals_are_shown_with_their_reason(tree):
    syn.write_deepspeed(tree / "ds", 10)
    syn.write_deepspeed(tree / "ds", 20)  # latest -> global_step20
    age_tree(tree)
    (tree / "hf_out" / "checkpoint-6" / "config.json").touch()  # written just now
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert "best" in (await refused(app, pilot, "hf_out/checkpoint-4")).lower()
        assert "promoted" in (await refused(app, pilot, "run1/promoted/tiny-bert_fold_0")).lower()
        assert "latest" in (await refused(app, pilot, "ds/global_step20")).lower()
        assert (
            "modified" in (await refused(app, pilot, "hf_out/checkpoint-6")).lower()
            or "written" in app.notices[-1][1]
        )
    for path in (
        "hf_out/checkpoint-4",
        "run1/promoted/tiny-bert_fold_0",
        "ds/global_step20",
        "hf_out/checkpoint-6",
    ):
        assert (tree / path).exists()


async def test_locked_run_refuses_delete(tree):
    lock = tree / "run1" / ".lock"
    lock.write_text(
        json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "started": "2026-01-01T00:00:00Z"})
    )
    os.utime(lock, (FIXED_MTIME, FIXED_MTIME))
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert "lock" in (await refused(app, pilot, "run1/checkpoints/fold_0/step_4")).lower()


async def test_nothing_selected_is_a_shown_refusal(tmp_path):
    app = make_app(tmp_path, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        for key in ("d", "S", "P", "m", "D", "p"):
            await pilot.press(key)
            await settle(app, pilot)
            assert app.notices and app.notices[-1][0] == "warning", key


async def test_prune_dry_run_list_equals_what_execute_removes(tree):
    app = make_app(tree, poll_interval=0, prune_keep=1)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "hf_out/checkpoint-2")
        await pilot.press("p")
        await settle(app, pilot)
        modal = app.screen
        assert type(modal).__name__ == "ConfirmModal"
        listed = {path for path, _, _ in modal.items}
        assert listed  # keep 1 + latest leaves one of three to prune
        before = set(app.browser.infos)
        await pilot.press("y")
        await settle(app, pilot)
        removed = before - set(app.browser.infos)
        assert removed == listed
        assert all(not (tree / p).exists() for p in listed)


async def test_slim_keeps_weights_and_drops_optimizer_state(tree):
    folder = tree / "hf_out" / "checkpoint-6"
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "hf_out/checkpoint-6")
        await pilot.press("S")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ConfirmModal"
        await pilot.press("y")
        await settle(app, pilot)
    assert not (folder / "optimizer.pt").exists()
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()


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
async def test_promote_writes_a_clean_folder_that_the_browser_marks(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "run1/tiny-bert_fold_1")
        await pilot.press("P")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "PromoteScreen"
        await pilot.press("enter")  # empty: the default <run>/promoted/<name>/
        await settle(app, pilot)
        assert app.notices[-1][0] == "information", app.notices[-1]
        out = tree / "run1" / "promoted" / "tiny-bert_fold_1"
        manifest = json.loads((out / "ckpt_manifest.json").read_text())
        assert manifest["kind"] == "promoted" and "model.safetensors" in manifest["files"]
        assert app.browser.infos["run1/tiny-bert_fold_1"].promoted
        assert app.browser.infos["run1/promoted/tiny-bert_fold_1"].promoted
        # a relative target is relative to ROOT
        await select(app, pilot, "run1/tiny-bert_fold_1")
        await pilot.press("P", *"exports/best", "enter")
        await settle(app, pilot)
        assert (tree / "exports" / "best" / "ckpt_manifest.json").is_file(), app.notices[-1]


async def test_promote_refusal_is_shown(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "run1/promoted/tiny-bert_fold_0")
        await pilot.press("P", "enter")
        await settle(app, pilot)
        severity, text = app.notices[-1]
        assert severity == "error" and "already a promoted export" in text


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
        assert "hf_out/checkpoint-8" not in app.browser.infos
        syn.write_hf_checkpoint(tree / "hf_out" / "checkpoint-8", 8)
        for _ in range(40):
            await pilot.pause(0.1)
            if "hf_out/checkpoint-8" in app.browser.infos:
                break
        assert "hf_out/checkpoint-8" in app.browser.infos
        assert "hf_out/checkpoint-8" in app.browser.visible_paths()
