"""Pilot tests of what changes the disk from the app: delete and undo, refusals, prune, slim, promote.
Each asserts on the disk and on what the user was told."""

from __future__ import annotations

import json
import os

import pytest
from textual.widgets import Input

from tests.fixtures import synthetic as syn
from tests.fixtures.pilot import (
    FIXED_MTIME,
    age_tree,
    burst,
    digest_tree,
    record_notices,
    select,
    settle,
)
from tui.app.app import make_app


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
        assert "hf_out/checkpoint-2" not in app.store.infos
        await pilot.press("u")
        await settle(app, pilot)
        assert digest_tree(target) == before
        assert "hf_out/checkpoint-2" in app.store.infos


async def test_cancelled_delete_changes_nothing(tree):
    app = make_app(tree, poll_interval=0)
    notices = record_notices(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "hf_out/checkpoint-6")
        await pilot.press("d")
        await settle(app, pilot)
        await pilot.press("n")
        await settle(app, pilot)
        assert (tree / "hf_out" / "checkpoint-6").is_dir()
        assert "cancelled" in notices[-1][1]


async def refused(app, pilot, notices: list, path: str, key: str = "d") -> str:
    await select(app, pilot, path)
    await pilot.press(key)
    await settle(app, pilot)
    assert type(app.screen).__name__ != "ConfirmModal", f"{path} was not refused"
    severity, text = notices[-1]
    assert severity == "error"
    return text


async def test_refusals_are_shown_with_their_reason(tree):
    syn.write_deepspeed(tree / "ds", 10)
    syn.write_deepspeed(tree / "ds", 20)  # latest -> global_step20
    age_tree(tree)
    (tree / "hf_out" / "checkpoint-6" / "config.json").touch()  # written just now
    app = make_app(tree, poll_interval=0)
    notices = record_notices(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert "best" in (await refused(app, pilot, notices, "hf_out/checkpoint-4")).lower()
        assert "promoted" in (await refused(app, pilot, notices, "run1/promoted/tiny-bert_fold_0")).lower()
        assert "latest" in (await refused(app, pilot, notices, "ds/global_step20")).lower()
        assert (
            "modified" in (await refused(app, pilot, notices, "hf_out/checkpoint-6")).lower()
            or "written" in notices[-1][1]
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
    notices = record_notices(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert "lock" in (await refused(app, pilot, notices, "run1/checkpoints/fold_0/step_4")).lower()


async def test_nothing_selected_is_a_shown_refusal(tmp_path):
    app = make_app(tmp_path, poll_interval=0)
    notices = record_notices(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        for key in ("d", "S", "P", "m", "D", "p"):
            await pilot.press(key)
            await settle(app, pilot)
            assert notices and notices[-1][0] == "warning", key


async def test_prune_dry_run_list_equals_what_execute_removes(tree):
    app = make_app(tree, poll_interval=0, prune_keep=1)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "hf_out/checkpoint-2")
        await pilot.press("p")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "PruneScreen"
        await pilot.press("enter")  # K 1 (from --keep), the run's metric
        await settle(app, pilot)
        modal = app.screen
        assert type(modal).__name__ == "ConfirmModal"
        listed = {path for path, _, _ in modal.items}
        assert listed  # keep 1 + latest leaves one of three to prune
        before = set(app.store.infos)
        await pilot.press("y")
        await settle(app, pilot)
        removed = before - set(app.store.infos)
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
async def test_promote_writes_a_clean_folder_that_the_browser_marks(tree):
    app = make_app(tree, poll_interval=0)
    notices = record_notices(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "run1/tiny-bert_fold_1")
        await pilot.press("P")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "PromoteScreen"
        await pilot.press("enter")  # empty: the default <run>/promoted/<name>/
        await settle(app, pilot)
        assert notices[-1][0] == "information", notices[-1]
        out = tree / "run1" / "promoted" / "tiny-bert_fold_1"
        manifest = json.loads((out / "ckpt_manifest.json").read_text())
        assert manifest["kind"] == "promoted" and "model.safetensors" in manifest["files"]
        assert app.store.infos["run1/tiny-bert_fold_1"].promoted
        assert app.store.infos["run1/promoted/tiny-bert_fold_1"].promoted
        # a relative target is relative to ROOT
        await select(app, pilot, "run1/tiny-bert_fold_1")
        await pilot.press("P", *"exports/best", "enter")
        await settle(app, pilot)
        assert (tree / "exports" / "best" / "ckpt_manifest.json").is_file(), notices[-1]


async def test_promote_refusal_is_shown(tree):
    app = make_app(tree, poll_interval=0)
    notices = record_notices(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "run1/promoted/tiny-bert_fold_0")
        await pilot.press("P", "enter")
        await settle(app, pilot)
        severity, text = notices[-1]
        assert severity == "error" and "already a promoted export" in text


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


async def test_error_notice_is_one_clean_line_relative_to_root(tree):
    app = make_app(tree, poll_interval=0)
    notices = record_notices(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "hf_out/checkpoint-4")
        await pilot.press("f")  # hf_out has no fold CSVs
        await settle(app, pilot)
        severity, text = notices[-1]
        assert severity == "warning"
        assert "hf_out: no valid_df_fold_<k>.csv files" in text
        assert str(tree) not in text and "Error" not in text and "\n" not in text
