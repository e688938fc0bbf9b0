"""The key footer (tui/app/widgets/footer.py): rebuilt when the keys it shows change, left as it is when
the screen announces a bindings change that changes nothing it shows (every focus move does)."""

from __future__ import annotations

from textual.widgets._footer import FooterKey

from tests.fixtures.pilot import settle
from tui.app.app import make_app


def _keys(app) -> list[FooterKey]:
    return list(app.query(FooterKey))


async def test_an_unchanged_footer_is_not_rebuilt_and_a_changed_one_is(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(app, pilot)
        keys = _keys(app)
        assert [k.description for k in keys][:3] == ["Quit", "Filter", "Sort"]
        for _ in range(3):  # what a focus move or a stack update announces
            app.screen.refresh_bindings()
            await pilot.pause()
        assert _keys(app) == keys  # the very same widgets: nothing was removed and mounted again
        assert all(k.is_attached for k in keys)

        app.set_keymap({"app.sort": "o"})  # a key the footer shows, now under another key
        app.screen.refresh_bindings()
        await pilot.pause()
        await pilot.pause()
        rebuilt = _keys(app)
        assert not set(rebuilt) & set(keys)
        sort = next(k for k in rebuilt if k.description == "Sort")
        assert sort.key_display == "o"
        assert sorted(k.description for k in rebuilt) == sorted(k.description for k in keys)


async def test_the_footer_follows_focus_into_the_filter_box(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(app, pilot)
        before = [k.description for k in _keys(app)]
        await pilot.press("slash")  # the filter box takes focus: the table's keys are no longer active
        await pilot.pause()
        await pilot.pause()
        assert app.focused is app.query_one("#filter")
        during = [k.description for k in _keys(app)]
        await pilot.press("escape")
        await pilot.pause()
        await pilot.pause()
        assert [k.description for k in _keys(app)] == before
        assert during != before
