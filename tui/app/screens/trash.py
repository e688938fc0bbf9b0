"""`t`: the trash under ROOT, newest first: when, what, size, which action and who (app or CLI) put it
there. `r`/enter restores the chosen entry, `x` empties it for good, `E` empties everything; each asks
first (restore through a confirmation modal, emptying through the one plan confirmation path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker

from tui.app import tasks
from tui.app.rows import cell
from tui.core.text import format_bytes
from tui.core.trash import TrashEntry


def when(deleted_at: str) -> str:
    """"2026-12-02T10:11:12Z" -> "2026-12-02 10:11 UTC" (what a person scans for)."""
    if len(deleted_at) >= 16 and deleted_at[10] == "T":
        return f"{deleted_at[:10]} {deleted_at[11:16]} UTC"
    return deleted_at or "?"


class TrashScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("r", "restore", "Restore", id="trash.restore"),
        Binding("x", "empty_one", "Empty entry", id="trash.empty_one"),
        Binding("E", "empty_all", "Empty all", id="trash.empty_all"),
        Binding("escape,q,t", "close", "Close", id="trash.close"),
    ]

    @dataclass
    class Listed(Message):
        entries: list[TrashEntry] | None
        error: str | None = None

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.entries: dict[str, TrashEntry] = {}
        self.loaded = False

    def compose(self) -> ComposeResult:
        with Vertical(id="trash-box"):
            yield Static("Trash", id="trash-title")
            yield DataTable(id="trash-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="trash-total", classes="hint")
            yield Static(
                "[b]r[/b]/[b]enter[/b] restore   [b]x[/b] empty entry   [b]E[/b] empty all   [b]esc[/b] close",
                classes="hint",
            )

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, key in (("when", "when"), ("what", "what"), ("size", "size"), ("by", "by"), ("from", "from")):
            table.add_column(label, key=key)
        self.reload_trash()

    def reload_trash(self) -> None:
        self._list_worker()

    @work(thread=True, exclusive=True, group="trash-list", exit_on_error=False)
    def _list_worker(self) -> None:
        worker = get_current_worker()
        try:
            message = self.Listed(tasks.trash_entries(self.root))
        except Exception as e:  # shown in the screen, never a crash
            message = self.Listed(None, tasks.one_line(e, self.root))
        if not worker.is_cancelled:
            self.post_message(message)

    def on_trash_screen_listed(self, message: Listed) -> None:
        table = self.query_one(DataTable)
        kept = table.cursor_row
        table.clear()
        self.entries = {e.id: e for e in message.entries or []}
        self.loaded = True
        total = self.query_one("#trash-total", Static)
        if message.entries is None:
            total.update(cell(f"Cannot read the trash: {message.error}", style="red"))
            return
        for e in message.entries:
            table.add_row(
                cell(when(e.deleted_at)),
                cell(e.what),
                format_bytes(e.size_bytes, compact=True),
                cell(e.action or "?"),
                cell(e.origin or "?"),
                key=e.id,
            )
        size = format_bytes(sum(e.size_bytes for e in message.entries))
        n = len(message.entries)
        total.update(f"{n} entr{'ies' if n != 1 else 'y'}, {size}" if n else "The trash is empty.")
        if n:
            table.move_cursor(row=min(kept, n - 1))

    @property
    def chosen(self) -> TrashEntry | None:
        table = self.query_one(DataTable)
        if not self.entries or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return self.entries.get(key or "")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()  # enter on a row
        self.action_restore()

    def action_restore(self) -> None:
        if (entry := self.chosen) is not None:
            self.app.restore_trash_entry(entry)

    def action_empty_one(self) -> None:
        if (entry := self.chosen) is not None:
            self.app.empty_trash_entries([entry.id])

    def action_empty_all(self) -> None:
        if self.entries:
            self.app.empty_trash_entries(list(self.entries))

    def action_close(self) -> None:
        self.dismiss(None)
