"""The ONE confirmation path for destructive actions (delete, slim, prune, trash empty)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.app.rows import cell
from tui.core.text import format_bytes, safe_text


def plan_table(items: list[tuple[str, int, str]], refusals: list[tuple[str, str]]) -> Table:
    """Every item that goes (path relative to ROOT, bytes, what it is), then what is refused and why."""
    table = Table(box=None, expand=True, show_header=True, padding=(0, 1))
    table.add_column("goes", overflow="fold", ratio=3)
    table.add_column("bytes", justify="right", no_wrap=True)
    table.add_column("what", overflow="fold", ratio=2, style="dim")
    for path, size, what in items:
        table.add_row(cell(path), format_bytes(size, compact=True), cell(what))
    for path, reason in refusals:
        table.add_row(cell(path, style="red"), "", cell(f"refused: {reason}", style="red"))
    return table


class ConfirmModal(ModalScreen[bool]):
    """Shows the plan summary and its full list; answers True only on ``y``."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n", "answer(False)", "No", id="confirm.no"),
        Binding("escape", "answer(False)", "Cancel", id="confirm.cancel"),
    ]

    def __init__(
        self,
        title: str,
        summary: str,
        items: list[tuple[str, int, str]] | None = None,
        refusals: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.summary = summary
        self.items = items or []
        self.refusals = refusals or []

    @classmethod
    def for_plan(cls, action: str, plan: Any) -> ConfirmModal:
        """Build from a ``tui.core.actions.Plan``: its summary verbatim, then every item it lists."""
        items = [(i.path, i.bytes, i.what) for i in plan.items]
        refusals = [(r.path, r.reason) for r in plan.refusals]
        return cls(f"Confirm {action}", plan.summary, items, refusals)

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self.title_text, id="confirm-title")
            with VerticalScroll(id="confirm-body"):
                yield Static(safe_text(self.summary), id="confirm-summary", markup=False)
                if self.items or self.refusals:
                    yield Static(plan_table(self.items, self.refusals), id="confirm-items")
            yield Static("[b]y[/b] confirm   [b]n[/b] / [b]esc[/b] cancel", id="confirm-keys")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
