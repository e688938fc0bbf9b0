"""The browser: one DataTable grouped run -> (fold) -> checkpoint, streamed into as the scan finds rows.

It renders the app's ``CheckpointStore`` (it never changes it): the app tells it which records changed
(``show``) or went (``drop``). Rows are keyed by checkpoint path (group headers by ``group:<run>``), so
rescans update cells in place instead of rebuilding the table. Streaming is incremental: a batch recounts
only the headers of the runs it touched (from a run -> paths index), and re-sorts row positions only when
its rows did not land in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from tui.app import rows
from tui.app.store import CheckpointStore
from tui.core.model import CheckpointInfo, run_of
from tui.core.text import format_bytes, lower_is_better, safe_text

GROUP_PREFIX = "group:"
COLUMNS = (
    ("name", "Name"),
    ("kind", "Kind"),
    ("step", "Step"),
    ("metric", "Metric"),
    ("size", "Size"),
    ("status", "Status"),
)
FIXED_WIDTHS = {"kind": 9, "step": 6, "metric": 7, "size": 7, "status": 10}


@dataclass(frozen=True)
class NameCell:
    """The name cell carries its row identity so the table can be sorted by group and sort key."""

    key: str
    group: str
    header: bool
    label: str
    marked: bool = False
    style: Style | str = ""  # from the browser's component classes (row--group, row--marked)

    def __rich__(self) -> Text:
        # Names are other people's: escape codes, newlines, bidi overrides and undecodable bytes are
        # shown escaped, never sent to the terminal.
        label = safe_text(self.label)
        if self.header:
            return Text(f"▾ {label}", style=self.style)
        mark = "◆ " if self.marked else "  "
        return Text(mark + label, style=self.style)


class CheckpointBrowser(DataTable):
    """DataTable of the store's checkpoints; it owns only how they are shown (sort, filter, groups)."""

    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | rows.STYLE_CLASSES
    # What k9s / lazygit users reach for; DataTable's own home/end scroll sideways only.
    BINDINGS = [
        Binding("g,home", "scroll_top", "First row", key_display="g/home", show=False, id="browser.top"),
        Binding("G,end", "scroll_bottom", "Last row", key_display="G/end", show=False, id="browser.bottom"),
        Binding("j", "cursor_down", "Down", show=False, id="browser.down"),
        Binding("k", "cursor_up", "Up", show=False, id="browser.up"),
    ]

    def __init__(self, store: CheckpointStore, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.store = store
        self.sort_by = "name"
        self.filter_text = ""
        self._groups_shown: set[str] = set()
        self._members: dict[str, set[str]] = {}  # run -> paths of its checkpoints (shown or filtered out)
        self.pin_top = False  # the app sets it while the first scan streams in: row 0 stays row 0

    def on_mount(self) -> None:
        fixed = sum(FIXED_WIDTHS.values()) + 2 * len(COLUMNS) + 2  # cell padding + scrollbar
        name_width = max(18, self.app.size.width - fixed)
        for key, label in COLUMNS:
            self.add_column(label, key=key, width=FIXED_WIDTHS.get(key, name_width))

    # --- what the app calls -------------------------------------------------------------------------

    def show(self, changes: Iterable[tuple[CheckpointInfo | None, CheckpointInfo]]) -> None:
        """Render new and changed records, as ``CheckpointStore.upsert`` returns them: (old, new)."""
        touched: set[str] = set()
        added = self.row_count
        for old, info in changes:
            group = run_of(info)
            if old is not None and run_of(old) != group:
                self._members.get(run_of(old), set()).discard(info.path)
                touched.add(run_of(old))
            self._members.setdefault(group, set()).add(info.path)
            touched.add(group)
            shown = self._is_shown(info.path)
            if not rows.matches(info, self.filter_text):
                if shown:
                    self.remove_row(info.path)
                continue
            if shown:
                self._update_cells(info)
            else:
                self._add_info_row(info)
        self._refresh_groups(touched)
        if self.row_count > added and not self._appended_in_order(self.row_count - added):
            self.arrange()

    def drop(self, gone: Iterable[CheckpointInfo]) -> None:
        """Remove the rows of records the store dropped (gone from disk)."""
        touched = set()
        for info in gone:
            touched.add(run_of(info))
            self._members.get(run_of(info), set()).discard(info.path)
            if self._is_shown(info.path):
                self.remove_row(info.path)
        self._refresh_groups(touched)

    def set_sort(self, sort_by: str) -> None:
        self.sort_by = sort_by
        self.arrange()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        for path, info in self.store.infos.items():
            want, shown = rows.matches(info, text), self._is_shown(path)
            if want and not shown:
                self._add_info_row(info)
            elif shown and not want:
                self.remove_row(path)
        self._refresh_groups(set(self._members) | set(self._groups_shown))
        self.arrange()

    def refresh_names(self, paths: Iterable[str]) -> None:
        """Redraw the name cells of ``paths`` (their marks changed)."""
        for path in paths:
            info = self.store.infos.get(path)
            if info is not None and self._is_shown(path):
                self.update_cell(path, "name", self._name_cell(info))

    @property
    def current_key(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except CellDoesNotExist:
            return None
        return row_key.value

    def visible_infos(self) -> list[CheckpointInfo]:
        """The checkpoints whose rows are in view now (group headers left out)."""
        top = int(self.scroll_offset.y)
        keys = [row.key.value for row in self.ordered_rows[top : top + self.size.height]]
        return [info for key in keys if key and (info := self.store.infos.get(key)) is not None]

    @property
    def current_info(self) -> CheckpointInfo | None:
        key = self.current_key
        return self.store.infos.get(key) if key and not key.startswith(GROUP_PREFIX) else None

    @property
    def current_group(self) -> str | None:
        """The run of the highlighted row (header or checkpoint)."""
        key = self.current_key
        if key is None:
            return None
        if key.startswith(GROUP_PREFIX):
            return key[len(GROUP_PREFIX) :]
        info = self.store.infos.get(key)
        return run_of(info) if info else None

    def _order(self, cell: NameCell, key_of=None):
        """Display order: by run, the run's header first, then the sort key."""
        if cell.header:
            return (cell.group, 0, ())
        return (cell.group, 1, (key_of or rows.sort_key(self.sort_by))(self.store.infos[cell.key]))

    def _appended_in_order(self, count: int) -> bool:
        """True when the last ``count`` rows (just added at the bottom) already sit where a sort puts them."""
        key_of = rows.sort_key(self.sort_by)
        first = max(0, self.row_count - count - 1)
        keys = [self._order(self.get_row_at(index)[0], key_of) for index in range(first, self.row_count)]
        return all(a <= b for a, b in zip(keys, keys[1:], strict=False))

    def arrange(self) -> None:
        """Re-order rows (group, header first, then the sort key), keeping the cursor on the same row
        (or on the first row while ``pin_top`` holds and the user has not moved off it)."""
        keep = None if self.pin_top and self.cursor_row == 0 else self.current_key
        key_of = rows.sort_key(self.sort_by)
        self.sort("name", key=lambda cell: self._order(cell, key_of))
        if keep is not None:
            try:
                index = self.get_row_index(keep)
            except RowDoesNotExist:
                return
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False)

    # --- internals ---------------------------------------------------------------------------------

    def style_of(self, component: str) -> Style:
        """The look of one of ``rows.STYLE_CLASSES``, from app.tcss (partial: the cursor row keeps its
        background)."""
        return self.get_component_rich_style(component, partial=True)

    def _is_shown(self, key: str) -> bool:
        return key in self.rows

    def _name_cell(self, info: CheckpointInfo) -> NameCell:
        marked = info.path in self.store.marked
        style = self.style_of("row--marked") if marked else ""
        return NameCell(info.path, run_of(info), False, rows.name_in_run(info), marked, style)

    def _header_cell(self, group: str) -> NameCell:
        label = group if group != "." else "(root)"
        return NameCell(
            GROUP_PREFIX + group, group, True, label, style=self.style_of("row--group")
        )

    def _cells(self, info: CheckpointInfo) -> dict[str, object]:
        return {
            "name": self._name_cell(info),
            "kind": rows.cell(rows.KIND_SHORT.get(info.kind, info.kind)),
            "step": Text(rows.step_text(info), justify="right"),
            "metric": Text(rows.metric_text(info), justify="right"),
            "size": Text(format_bytes(info.size_bytes, compact=True), justify="right"),
            "status": rows.badge(info, self.style_of),
        }

    def _add_info_row(self, info: CheckpointInfo) -> None:
        group = run_of(info)
        if not self._is_shown(GROUP_PREFIX + group):
            # The header goes in before its first row, so rows streamed in path order need no re-sort;
            # _refresh_groups fills in its counts.
            self.add_row(self._header_cell(group), *[""] * (len(COLUMNS) - 1), key=GROUP_PREFIX + group)
            self._groups_shown.add(group)
        cells = self._cells(info)
        self.add_row(*(cells[key] for key, _ in COLUMNS), key=info.path)

    def _update_cells(self, info: CheckpointInfo) -> None:
        for key, value in self._cells(info).items():
            if self.get_cell(info.path, key) != value:
                self.update_cell(info.path, key, value)

    def _refresh_groups(self, groups: set[str]) -> None:
        """Keep one header row per group with visible rows: count, total size, best metric."""
        for group in groups:
            members = [self.store.infos[p] for p in self._members.get(group, ()) if self._is_shown(p)]
            key = GROUP_PREFIX + group
            if not members:
                if self._is_shown(key):
                    self.remove_row(key)
                self._groups_shown.discard(group)
                continue
            metrics = [(rows.metric_value(i), i) for i in members if rows.metric_value(i) is not None]
            best = ""
            if metrics:
                name = metrics[0][1].metric.name if metrics[0][1].metric else None
                pick = min if lower_is_better(name) else max
                best = f"{pick(v for v, _ in metrics):.4g}"
            broken = sum(rows.status_of(i) == "broken" for i in members)
            dim = self.style_of("row--dim")
            size = format_bytes(sum(i.size_bytes for i in members), compact=True)
            cells = {
                "name": self._header_cell(group),
                "kind": Text("run", style=dim),
                "step": Text(f"{len(members)}", justify="right", style=dim),
                "metric": Text(best, justify="right", style=dim),
                "size": Text(size, justify="right", style=dim),
                "status": (
                    Text(f"✖ {broken} broken", style=self.style_of("status--broken"))
                    if broken
                    else Text("")
                ),
            }
            if self._is_shown(key):
                for col, value in cells.items():
                    if self.get_cell(key, col) != value:
                        self.update_cell(key, col, value)
            else:
                self.add_row(*(cells[k] for k, _ in COLUMNS), key=key)
                self._groups_shown.add(group)
