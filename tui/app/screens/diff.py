"""Two marked checkpoints side by side: config key differences, tensor name/shape/dtype differences."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from tui.app.rows import cell
from tui.core.text import safe_text


def _cell(value: Any) -> Text:
    return cell(safe_text(value, 60))


class DiffScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close", id="diff.close")]

    def __init__(self, left: str, right: str, config_diff: list, tensor_diff: list) -> None:
        super().__init__()
        self.left, self.right = left, right
        self.config_diff, self.tensor_diff = config_diff, tensor_diff

    def compose(self) -> ComposeResult:
        with Vertical(id="diff-box"):
            yield Static(
                f"A: {safe_text(self.left)}\nB: {safe_text(self.right)}", id="diff-title", markup=False
            )
            with TabbedContent(id="diff-tabs"):
                with TabPane(f"Config ({len(self.config_diff)})", id="diff-config"):
                    yield DataTable(id="diff-config-table", cursor_type="row")
                with TabPane(f"Tensors ({len(self.tensor_diff)})", id="diff-tensors"):
                    yield DataTable(id="diff-tensor-table", cursor_type="row")
            yield Static("esc close   ← → switch tab", classes="hint")

    def on_mount(self) -> None:
        self._fill("#diff-config-table", "key", self.config_diff, "(configs are identical)")
        self._fill("#diff-tensor-table", "tensor", self.tensor_diff, "(same tensor names, dtypes and shapes)")

    def _fill(self, table_id: str, what: str, differences: list, when_none: str) -> None:
        table = self.query_one(table_id, DataTable)
        table.add_columns(what, "A", "B")
        for row in differences:
            table.add_row(*(_cell(value) for value in row))
        if not differences:
            table.add_row(when_none, "", "")

    def action_close(self) -> None:
        self.dismiss(None)
