"""Ask where to promote: empty means the default ``<run>/promoted/<name>/``."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from tui.core.text import safe_text


class PromoteScreen(ModalScreen["str | None"]):
    """Dismisses with the target path ('' for the default) or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="promote.cancel")]

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def compose(self) -> ComposeResult:
        with Vertical(id="promote-box"):
            yield Static(
                f"Promote [b]{escape(safe_text(self.source))}[/b] as a clean HF folder",
                id="promote-title",
                markup=True,
            )
            yield Static("Target folder (empty: <run>/promoted/<name>/):", classes="hint")
            yield Input(placeholder="leave empty for the default", id="promote-target")
            yield Static("[b]enter[/b] promote   [b]esc[/b] cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)
