"""The status line shows the free space of ROOT's filesystem, refreshed at each poll, and warns under 10%."""

from __future__ import annotations

from textual.widgets import Static

from tests.fixtures.pilot import settle
from tui.app.app import make_app
from tui.core.du import FreeSpace


def _status(app) -> str:
    return str(app.query_one("#status", Static).content)


async def test_free_space_shown_and_low_space_warned(tree, fixed_free_space):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(app, pilot)
        assert "free 512.0 GiB (50%)" in _status(app) and "low disk space" not in _status(app)

        fixed_free_space.value = FreeSpace("/", 100 << 30, 5 << 30)
        app.start_scan(only_if_changed=True)  # what each poll does
        await settle(app, pilot)
        assert "free 5.0 GiB (5%): low disk space" in _status(app)


async def test_unknown_free_space_is_left_out(tree, fixed_free_space):
    fixed_free_space.value = None
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(app, pilot)
        assert "free " not in _status(app) and "checkpoints" in _status(app)
