"""Names and file contents chosen by other users reach the screen escaped, never as terminal controls."""

from __future__ import annotations

import json
from pathlib import Path

from tests.app.conftest import age_tree, screen_text, settle
from tests.app.test_app import select
from tests.fixtures import synthetic as syn
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
    syn.write_manifest(folder, kind="step-checkpoint", metric={"name": "f1\x1b[7m", "value": 0.5})


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
    app = make_app(root, poll_interval=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert len(app.browser.infos) == len(EVIL_NAMES)
        text = screen_text(app)
        assert_clean(text, "the table", rows=30)
        assert "evil\\x1b[31mred" in text and "a\\x0ab" in text
        for path in sorted(app.browser.infos):
            await select(app, pilot, path)
            for tab in TABS:
                app.detail.show_tab(tab)
                await pilot.pause()
                assert_clean(screen_text(app), f"{path!r} tab {tab}", rows=30)
        await pilot.press("d")  # the confirmation modal names the path
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ConfirmModal"
        assert_clean(screen_text(app), "the confirmation")
        await pilot.press("n")
        await pilot.press("f")  # an error toast naming the run
        await settle(app, pilot)
        assert "No fold metrics" in app.notices[-1][1]
        assert_clean(app.notices[-1][1], "the notice")
        assert_clean(screen_text(app), "the toast")


async def test_the_run_header_best_is_the_min_for_a_ppl_ranked_run(tmp_path):
    root = tmp_path / "tree"
    for name, ppl in (("a", 7.0), ("b", 3.0), ("c", 5.0)):
        syn.write_hf_model(root / "run" / name, tokenizer=False)
        syn.write_manifest(root / "run" / name, kind="step-checkpoint", metric={"name": "ppl", "value": ppl})
    age_tree(root)
    app = make_app(root, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert app.browser.get_cell("group:run", "metric").plain == "3"
