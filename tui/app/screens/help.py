"""`?`: every key the app answers to, with what it does."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def keys_table(bindings: list[Binding]) -> Table:
    table = Table(show_header=True, expand=True, box=None)
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("action")
    table.add_column("id", style="dim")
    for b in bindings:
        table.add_row(b.key_display or b.key, b.description, b.id or "")
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close"),
    ]

    def __init__(self, bindings: list[Binding]) -> None:
        super().__init__()
        self.bindings_shown = bindings

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static("Keys  (remap by binding id; ctrl+p opens the command palette)", id="help-title")
            with VerticalScroll():
                yield Static(keys_table(self.bindings_shown), id="help-keys")
            yield Static("[b]esc[/b] close", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)
