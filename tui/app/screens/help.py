"""`?`: every key the app answers to, with what it does."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.core.text import safe_text

KEYMAP_SHOWN = "$XDG_CONFIG_HOME/ckpt-tui/keymap.toml (~/.config/ckpt-tui/keymap.toml)"


def keys_table(bindings: list[Binding], keymap: dict[str, str] | None = None) -> Table:
    """Each binding with the keys it answers to now (keymap.toml's, when it remaps the binding's id)."""
    keymap = keymap or {}
    table = Table(show_header=True, expand=True, box=None)
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("action")
    table.add_column("id", style="dim")
    for b in bindings:
        keys = keymap.get(b.id or "") or b.key_display or b.key
        table.add_row(safe_text(keys), b.description, b.id or "")
    return table


def every_binding(app_bindings: list[Binding]) -> list[Binding]:
    """The app's bindings, the browser's, then each screen's: every id keymap.toml can remap."""
    from tui.app.screens.confirm import ConfirmModal
    from tui.app.screens.diff import DiffScreen
    from tui.app.screens.fold_metrics import FoldMetricsScreen
    from tui.app.screens.promote import PromoteScreen
    from tui.app.screens.prune import PruneScreen
    from tui.app.screens.trash import TrashScreen
    from tui.app.widgets.browser import CheckpointBrowser

    screens = (TrashScreen, PruneScreen, PromoteScreen, ConfirmModal, DiffScreen, FoldMetricsScreen, HelpScreen)
    return [*app_bindings, *CheckpointBrowser.BINDINGS, *(b for screen in screens for b in screen.BINDINGS)]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close"),
    ]

    def __init__(self, bindings: list[Binding], keymap: dict[str, str] | None = None) -> None:
        super().__init__()
        self.bindings_shown = bindings
        self.keymap = keymap or {}

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static("Keys  (ctrl+p opens the command palette)", id="help-title")
            with VerticalScroll():
                yield Static(keys_table(self.bindings_shown, self.keymap), id="help-keys")
            yield Static(
                f"Remap a key by its id in {KEYMAP_SHOWN}, e.g. \"app.delete\" = \"x\"",
                classes="hint",
                markup=False,
            )
            yield Static("[b]esc[/b] close", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)
