"""Names and file contents chosen by other users reach the screen escaped, never as terminal controls."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.fixtures import synthetic as syn
from tests.fixtures.pilot import age_tree, body_text, record_notices, screen_text, select, settle
from tui.app.app import make_app
from tui.app.widgets.detail import TABS

# Retitle the terminal, recolour, clear the screen, fake a row, reverse the text that follows.
EVIL_NAMES = ["evil\x1b[31mred", "t\x1b]0;PWNED\x07x", "a\nb", "rlo\u202egnp.exe", "c1\x9b2J"]
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def evil_checkpoint(folder: Path) -> None:
    """A model whose config, tokenizer, manifest metric and weights all carry control characters."""
    syn.write_hf_model(folder, config={"evil\x1b[2J": "value\x1b]0;T\x07", "model_type": "bert\u202e"})
    special = json.loads((folder / "special_tokens_map.json").read_text())
    special["mask_token"] = "[MASK\x1b[5m]"
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    syn.write_manifest(folder, kind="step-checkpoint", metric={"name": "f1\x1b[7m", "value": 0.5}, best_metric=None)


def assert_clean(text: str, where: str, rows: int | None = None) -> None:
    for raw in RAW:
        assert raw not in text, f"{raw!r} reached the terminal in {where}"
    if rows is not None:
        assert text.count("\n") == rows - 1, f"a newline reached the terminal in {where}"


async def test_hostile_names_and_contents_are_drawn_escaped(tmp_path):
    root = tmp_path / "tree"
    for name in EVIL_NAMES:
        evil_checkpoint(root / name / "model")
    age_tree(root)
    app = make_app(root, poll_interval=0, inspect_delay=0)
    notices = record_notices(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert len(app.store.infos) == len(EVIL_NAMES)
        text = screen_text(app)
        assert_clean(text, "the table", rows=30)
        assert "evil\\x1b[31mred" in text and "a\\x0ab" in text
        for path in sorted(app.store.infos):  # each name in the overview (path, absolute path, run)
            await select(app, pilot, path)
            assert_clean(screen_text(app), f"{path!r} overview", rows=30)
        for tab in TABS:  # every tab of one of them: config, tokens, metric and tensor names, files
            app.detail.show_tab(tab)
            await pilot.pause()
            assert_clean(screen_text(app), f"tab {tab}", rows=30)
        await pilot.press("d")  # the confirmation modal names the path
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ConfirmModal"
        assert_clean(screen_text(app), "the confirmation")
        await pilot.press("n")
        await pilot.press("f")  # an error toast naming the run
        await settle(app, pilot)
        assert "No fold metrics" in notices[-1][1]
        assert_clean(notices[-1][1], "the notice")
        assert_clean(screen_text(app), "the toast")


async def test_undecodable_file_names_are_shown_escaped_and_can_be_deleted(tmp_path):
    root = tmp_path / "tree"
    odd = os.fsdecode(b"run\xff")  # a name that is not UTF-8: Python keeps the byte as a surrogate
    syn.write_hf_model(root / odd / "model")
    syn.write_hf_model(root / "ok" / "model")
    age_tree(root)
    app = make_app(root, poll_interval=0)
    notices = record_notices(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        path = f"{odd}/model"
        assert path in app.store.infos
        await select(app, pilot, path)
        assert "run\\xff/model" in body_text(app, "overview")
        header = app.browser.get_cell(f"group:{odd}", "name").__rich__().plain
        assert header == "▾ run\\xff (1)"
        screen = app.export_screenshot()
        assert "\udcff" not in screen and "run\\xff" in screen
        await pilot.press("d")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ConfirmModal"
        assert "\udcff" not in app.export_screenshot()
        await pilot.press("y")
        await settle(app, pilot)
        assert notices[-1][0] == "information" and "Deleted 1 item" in notices[-1][1]
        assert path not in app.store.infos
    assert not (root / odd / "model").exists()
