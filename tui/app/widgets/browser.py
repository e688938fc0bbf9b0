"""The browser: one DataTable grouped run -> checkpoint, streamed into as the scan finds rows.

It renders the app's ``CheckpointStore`` (it never changes it): the app tells it which records changed
(``show``) or went (``drop``). Rows are keyed by checkpoint path (run headers by ``group:<run>``), so
rescans update cells in place instead of rebuilding the table. Streaming is incremental: a batch recounts
only the headers of the runs it touched, and re-sorts row positions only when its rows did not land in
order. A run folds away (its header stays, with its count); the columns are laid out again on every
resize (``columns.layout``). The cursor stays on its checkpoint while rows come and go around it, and
keeps its place on screen; when its own row goes it moves to the nearest row of the same run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual import events
from textual.actions import SkipAction
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, DuplicateKey, Row, RowKey

from tui.app import rows
from tui.app.store import CheckpointStore
from tui.app.widgets import columns
from tui.core.model import CheckpointInfo, run_of
from tui.core.text import format_bytes, lower_is_better, safe_text

GROUP_PREFIX = "group:"
REBUILD_ABOVE = 200  # more row insertions/removals than this at once: rebuild the table instead
NEIGHBOURS = 64  # rows either side of the cursor remembered, to land near when its row goes


@dataclass(frozen=True)
class NameCell:
    """The name cell carries its row identity so the table can be sorted by group and sort key."""

    key: str
    group: str
    header: bool
    label: str
    marked: bool = False
    style: Style | str = ""  # from the browser's component classes (row--group, row--marked)
    collapsed: bool = False
    count: int = 0  # a header: its run's checkpoints (those the filter lets through)

    def __rich__(self) -> Text:
        # Names are other people's: escape codes, newlines, bidi overrides and undecodable bytes are
        # shown escaped, never sent to the terminal.
        label = safe_text(self.label)
        if self.header:
            return Text(f"{'▸' if self.collapsed else '▾'} {label} ({self.count})", style=self.style)
        mark = "◆ " if self.marked else "  "
        return Text(mark + label, style=self.style)


class CheckpointBrowser(DataTable):
    """DataTable of the store's checkpoints; it owns only how they are shown (sort, filter, folds)."""

    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | rows.STYLE_CLASSES
    # What k9s / lazygit users reach for; DataTable's own home/end scroll sideways only.
    BINDINGS = [
        Binding("g,home", "scroll_top", "First row", key_display="g/home", show=False, id="browser.top"),
        Binding("G,end", "scroll_bottom", "Last row", key_display="G/end", show=False, id="browser.bottom"),
        Binding("j", "cursor_down", "Down", show=False, id="browser.down"),
        Binding("k", "cursor_up", "Up", show=False, id="browser.up"),
        Binding("left,h", "collapse", "Fold run", key_display="←/h", show=False, id="browser.collapse"),
        Binding("right,l", "expand", "Unfold run", key_display="→/l", show=False, id="browser.expand"),
        Binding("enter", "open", "Open", key_display="enter", show=False, id="browser.open"),
        Binding("minus", "collapse_all", "Fold all runs", key_display="-", show=False, id="browser.fold_all"),
        Binding(
            "plus,equals_sign",
            "expand_all",
            "Unfold all runs",
            key_display="+/=",
            show=False,
            id="browser.unfold_all",
        ),
    ]

    class OpenCheckpoint(Message):
        """Enter on a checkpoint row: the app shows its detail full screen."""

    def __init__(self, store: CheckpointStore, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.store = store
        self.sort_by = "name"
        self.reverse = False
        self.filter_text = ""
        self.collapsed: set[str] = set()  # runs folded away
        self.layout_columns: list[columns.Column] = []
        self._members: dict[str, set[str]] = {}  # run -> paths of its checkpoints (shown or not)
        self._matching: set[str] = set()  # paths the filter lets through
        self._run_bytes: dict[str, int] = {}  # run -> bytes of all its checkpoints (sort runs by size)
        self.pin_top = False  # the app sets it while the first scan streams in: row 0 stays row 0
        self._style_memo: dict[str, Style] | None = None  # see _styles_kept

    # --- columns ------------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._set_columns(columns.layout(self._table_width(self.app.size.width)))

    def on_resize(self, event: events.Resize) -> None:
        wanted = columns.layout(self._table_width(event.size.width))
        if [c.key for c in wanted] != [c.key for c in self.layout_columns]:
            self._rebuild(wanted)
        elif wanted != self.layout_columns:
            self.layout_columns = wanted
            for column in wanted:
                self.columns[column.key].width = column.width
            self.notify_style_update()  # drops the rendered rows cached at the old widths
            self.refresh(layout=True)

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        # DataTable measures every cell of every new row, for auto-width columns and auto-height rows.
        # Here every column has a set width and every row one line, so measuring (most of the cost of
        # adding a thousand rows) would change nothing: only the table's size is computed.
        super()._update_dimensions(())

    def _table_width(self, width: int) -> int:
        # The vertical scrollbar is kept clear even before there are rows enough to show it, so the
        # table never grows a sideways scrollbar when the first screenful fills up.
        return width - self.styles.scrollbar_size_vertical

    def _set_columns(self, layout: list[columns.Column]) -> None:
        self.layout_columns = layout
        for column in layout:
            self.add_column(column.label, key=column.key, width=column.width)

    # --- what the app calls -------------------------------------------------------------------------

    def show(self, changes: Iterable[tuple[CheckpointInfo | None, CheckpointInfo]]) -> None:
        """Render new and changed records, as ``CheckpointStore.upsert`` returns them: (old, new)."""
        touched: set[str] = set()
        added = self.row_count
        new_rows: list[CheckpointInfo] = []
        with self._cursor_kept(), self._styles_kept():
            for old, info in changes:
                group = run_of(info)
                if old is not None and run_of(old) != group:
                    self._forget_member(old)
                    touched.add(run_of(old))
                self._members.setdefault(group, set()).add(info.path)
                touched.add(group)
                if rows.matches(info, self.filter_text):
                    self._matching.add(info.path)
                else:
                    self._matching.discard(info.path)
                shown = self._is_shown(info.path)
                if not self._wanted(info.path):
                    if shown:
                        self.remove_row(info.path)
                elif shown:
                    self._update_cells(info)
                else:
                    new_rows.append(info)
            # Rows go in once every membership above is known, so a new run's header gets its cells as
            # it is added (no second pass over each of its cells).
            self._refresh_groups(touched, self._add_rows(new_rows))
            if self.row_count > added and not self._appended_in_order(self.row_count - added):
                self._sort_rows()

    def drop(self, gone: Iterable[CheckpointInfo]) -> None:
        """Remove the rows of records the store dropped (gone from disk)."""
        touched = set()
        with self._cursor_kept(), self._styles_kept():
            for info in gone:
                touched.add(run_of(info))
                self._forget_member(info)
                if self._is_shown(info.path):
                    self.remove_row(info.path)
            self._refresh_groups(touched)

    def set_sort(self, sort_by: str, reverse: bool | None = None) -> None:
        self.sort_by = sort_by
        if reverse is not None:
            self.reverse = reverse
        self.arrange()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._matching = {p for p, i in self.store.infos.items() if rows.matches(i, text)}
        self._sync_rows(set(self._members))

    def collapse(self, group: str) -> None:
        self.collapsed.add(group)
        self._sync_rows({group})

    def expand(self, group: str) -> None:
        self.collapsed.discard(group)
        self._sync_rows({group})

    def collapse_all(self) -> None:
        self.collapsed = set(self._members)
        self._sync_rows(set(self._members))

    def expand_all(self) -> None:
        self.collapsed.clear()
        self._sync_rows(set(self._members))

    def refresh_names(self, paths: Iterable[str]) -> None:
        """Redraw the name cells of ``paths`` (their marks changed)."""
        for path in paths:
            info = self.store.infos.get(path)
            if info is not None and self._is_shown(path):
                self.update_cell(path, "name", self._name_cell(info))

    def refresh_runs(self, groups: Iterable[str]) -> None:
        """Redraw the headers of ``groups`` (their live marker changed)."""
        with self._styles_kept():
            self._refresh_groups(set(groups) & set(self._members))

    @property
    def matching_count(self) -> int:
        """Checkpoints the filter lets through (folded runs' included)."""
        return len(self._matching)

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
        """The checkpoints whose rows are in view now (run headers left out)."""
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

    def move_to(self, key: str) -> None:
        self.move_cursor(row=self.get_row_index(key), animate=False)

    # --- keys ---------------------------------------------------------------------------------------

    def action_collapse(self) -> None:
        group = self.current_group
        if group is None:
            raise SkipAction()
        if group not in self.collapsed:
            self.collapse(group)
        self.move_to(GROUP_PREFIX + group)

    def action_expand(self) -> None:
        key, group = self.current_key, self.current_group
        if key is None or group is None or not key.startswith(GROUP_PREFIX):
            raise SkipAction()
        if group in self.collapsed:
            self.expand(group)
        elif self.cursor_row + 1 < self.row_count:
            self.move_cursor(row=self.cursor_row + 1)  # already open: step into it, as file trees do

    def action_open(self) -> None:
        key, group = self.current_key, self.current_group
        if key is None or group is None:
            raise SkipAction()
        if key.startswith(GROUP_PREFIX):
            (self.expand if group in self.collapsed else self.collapse)(group)
        else:
            self.post_message(self.OpenCheckpoint())

    def action_collapse_all(self) -> None:
        group = self.current_group
        self.collapse_all()
        if group is not None:
            self.move_to(GROUP_PREFIX + group)

    def action_expand_all(self) -> None:
        self.expand_all()

    # --- order --------------------------------------------------------------------------------------

    def _order(self, cell: NameCell, key_of=None):
        """Display order: by run (name or size), the run's header first, then the sort key."""
        group = rows.group_key(self.sort_by, self.reverse, cell.group, self._run_bytes.get(cell.group, 0))
        if cell.header:
            return (group, 0, ())
        key_of = key_of or rows.sort_key(self.sort_by, self.reverse)
        return (group, 1, key_of(self.store.infos[cell.key]))

    def _appended_in_order(self, count: int) -> bool:
        """True when the last ``count`` rows (just added at the bottom) already sit where a sort puts them."""
        key_of = rows.sort_key(self.sort_by, self.reverse)
        first = max(0, self.row_count - count - 1)
        names = [self.get_cell_at(Coordinate(index, 0)) for index in range(first, self.row_count)]  # Name
        keys = [self._order(cell, key_of) for cell in names]
        return all(not b < a for a, b in zip(keys, keys[1:], strict=False))

    def arrange(self) -> None:
        """Re-order rows, keeping the cursor on the same row (or on the first row while ``pin_top``
        holds and the user has not moved off it)."""
        with self._cursor_kept():
            self._sort_rows()

    def _sort_rows(self) -> None:
        key_of = rows.sort_key(self.sort_by, self.reverse)
        self.sort("name", key=lambda cell: self._order(cell, key_of))

    @contextmanager
    def _cursor_kept(self) -> Iterator[None]:
        """Around a change of rows: afterwards the cursor is on the row it was on (or, when that row is
        gone, the nearest row of its run, else its run's header), at the same height on screen."""
        key = None if self.pin_top and self.cursor_row == 0 else self.current_key
        if key is None:
            yield
            return
        index = self.cursor_row
        offset = index - round(self.scroll_y)
        group = self._group_of_row(key)
        order = self.ordered_rows
        after = [r.key.value for r in order[index + 1 : index + 1 + NEIGHBOURS]]
        before = [r.key.value for r in reversed(order[max(0, index - NEIGHBOURS) : index])]
        # The run of each neighbour, read now: a row may be gone from the store by the time we land.
        runs = {k: self._group_of_row(k) for k in (*after, *before)}
        yield
        target = key if self._is_shown(key) else self._nearest(group, after + before, runs)
        if target is None:
            return
        new_index = self.get_row_index(target)
        if new_index != self.cursor_row or target != key:
            self.move_cursor(row=new_index, animate=False, scroll=False)
        if new_index != index:
            self.call_after_refresh(self._scroll_to_offset, target, offset)

    def _scroll_to_offset(self, key: str, offset: int) -> None:
        if not self._is_shown(key):
            return
        offset = min(max(offset, 0), max(self.scrollable_content_region.height - 2, 0))
        self.scroll_to(y=max(self.get_row_index(key) - offset, 0), animate=False)

    def _nearest(self, group: str, candidates: list[str], runs: dict[str, str]) -> str | None:
        """Where the cursor lands when its own row went: the next, else the previous, checkpoint of the
        same run (``candidates`` are the rows after it, nearest first, then those before it); else the
        run's header; else whatever row was nearest."""
        for key in candidates:
            if runs[key] == group and not key.startswith(GROUP_PREFIX) and self._is_shown(key):
                return key
        if self._is_shown(GROUP_PREFIX + group):
            return GROUP_PREFIX + group
        return next((k for k in candidates if self._is_shown(k)), None)

    def _group_of_row(self, key: str) -> str:
        cell = self.get_cell(key, "name")
        return cell.group

    # --- internals ----------------------------------------------------------------------------------

    def style_of(self, component: str) -> Style:
        """The look of one of ``rows.STYLE_CLASSES``, from app.tcss (partial: the cursor row keeps its
        background)."""
        memo = self._style_memo
        if memo is None:
            return self.get_component_rich_style(component, partial=True)
        style = memo.get(component)
        if style is None:
            style = memo[component] = self.get_component_rich_style(component, partial=True)
        return style

    @contextmanager
    def _styles_kept(self) -> Iterator[None]:
        """Around one change of many rows: each component's style is looked up once (Textual forgets its
        own copy at every cell update, and the look cannot change in the middle of one handler)."""
        if self._style_memo is not None:
            yield
            return
        self._style_memo = {}
        try:
            yield
        finally:
            self._style_memo = None

    def _is_shown(self, key: str) -> bool:
        return key in self.rows

    def _wanted(self, path: str) -> bool:
        info = self.store.infos.get(path)
        return path in self._matching and info is not None and run_of(info) not in self.collapsed

    def _forget_member(self, info: CheckpointInfo) -> None:
        self._members.get(run_of(info), set()).discard(info.path)
        self._matching.discard(info.path)

    def _sync_rows(self, groups: set[str]) -> None:
        """Add or remove the rows of ``groups`` to match the filter and the folds (a large change
        rebuilds the table: DataTable removes rows one at a time)."""
        changes = [
            path
            for group in groups
            for path in self._members.get(group, ())
            if self._wanted(path) != self._is_shown(path)
        ]
        if len(changes) > REBUILD_ABOVE:
            self._rebuild(self.layout_columns)
            return
        adding = [self.store.infos[path] for path in changes if not self._is_shown(path)]
        with self._cursor_kept(), self._styles_kept():
            for path in changes:
                if self._is_shown(path):
                    self.remove_row(path)
            self._refresh_groups(groups, self._add_rows(adding))
            self._sort_rows()

    def _rebuild(self, layout: list[columns.Column]) -> None:
        """Every row again, under ``layout`` (columns appear and go as the width changes)."""
        with self._cursor_kept(), self._styles_kept():
            self.clear(columns=True)
            self._set_columns(layout)
            paths = [path for members in self._members.values() for path in members if self._wanted(path)]
            self._refresh_groups(set(self._members), self._add_rows(self.store.infos[p] for p in paths))
            self._sort_rows()

    def _name_cell(self, info: CheckpointInfo) -> NameCell:
        marked = info.path in self.store.marked
        style = self.style_of("row--marked") if marked else ""
        return NameCell(info.path, run_of(info), False, rows.name_in_run(info), marked, style)

    def _header_cell(self, group: str, count: int) -> NameCell:
        label = group if group != "." else "(root)"
        return NameCell(
            GROUP_PREFIX + group,
            group,
            True,
            label,
            style=self.style_of("row--group"),
            collapsed=group in self.collapsed,
            count=count,
        )

    def _cells(self, info: CheckpointInfo) -> dict[str, object]:
        return {
            "name": self._name_cell(info),
            "kind": rows.cell(rows.KIND_SHORT.get(info.kind, info.kind)),
            "step": Text(rows.step_text(info), justify="right"),
            "metric": Text(rows.metric_text(info), justify="right"),
            "params": Text(rows.params_text(info), justify="right"),
            "size": Text(format_bytes(info.size_bytes, compact=True), justify="right"),
            "status": rows.badge(info, self.style_of),
        }

    def _row(self, cells: dict[str, object]) -> list[object]:
        return [cells[column.key] for column in self.layout_columns]

    def _add_rows(self, infos: Iterable[CheckpointInfo]) -> set[str]:
        """Add the rows of ``infos`` (not shown yet), each run's header before its first row when it has
        none (rows streamed in path order then need no re-sort). Returns the runs whose header was added,
        with cells already up to date."""
        headed: set[str] = set()
        new: list[tuple[str, list[object]]] = []
        for info in infos:
            group = run_of(info)
            if group not in headed and not self._is_shown(GROUP_PREFIX + group):
                header = self._header_cells(group, self._matching_members(group))
                new.append((GROUP_PREFIX + group, self._row(header)))
                headed.add(group)
            new.append((info.path, self._row(self._cells(info))))
        self._append_rows(new)
        return headed

    def _append_rows(self, new: list[tuple[str, list[object]]]) -> None:
        """``add_row(*cells, key=key)`` for each of ``new``, as one change of the table: DataTable's
        add_row re-checks the cursor (a reactive update) and invalidates the table per row, which is
        most of the cost of showing a thousand rows."""
        if not new:
            return
        first = self.row_count == 0
        columns = [column.key for column in self.ordered_columns]
        for key, cells in new:
            row_key = RowKey(key)
            if row_key in self._row_locations:
                raise DuplicateKey(f"The row key {row_key!r} already exists.")
            self._row_locations[row_key] = self.row_count
            self._data[row_key] = dict(zip(columns, cells, strict=True))
            self.rows[row_key] = Row(row_key, 1)
            self._new_rows.add(row_key)
        self._require_update_dimensions = True
        self.cursor_coordinate = self.cursor_coordinate
        if first and self.columns and self.show_cursor and self.cursor_type != "none":
            self._highlight_cursor()  # as add_row does for the first row: the cursor has a row now
        self._update_count += 1
        self.check_idle()

    def _update_cells(self, info: CheckpointInfo) -> None:
        cells = self._cells(info)
        for column in self.layout_columns:
            value = cells[column.key]
            if self.get_cell(info.path, column.key) != value:
                self.update_cell(info.path, column.key, value)

    def _refresh_groups(self, groups: set[str], headed: set[str] = frozenset()) -> None:
        """One header row per run with checkpoints the filter lets through: count, size, best metric.
        The headers of ``headed`` were just added with their cells: only the run's size is updated."""
        for group in groups:
            everyone = [self.store.infos[p] for p in self._members.get(group, ()) if p in self.store.infos]
            self._run_bytes[group] = sum(i.size_bytes for i in everyone)
            if group in headed:
                continue
            members = [i for i in everyone if i.path in self._matching]
            key = GROUP_PREFIX + group
            if not members:
                if self._is_shown(key):
                    self.remove_row(key)
                continue
            cells = self._header_cells(group, members)
            if self._is_shown(key):
                for column in self.layout_columns:
                    if self.get_cell(key, column.key) != cells[column.key]:
                        self.update_cell(key, column.key, cells[column.key])
            else:
                self.add_row(*self._row(cells), key=key)

    def _matching_members(self, group: str) -> list[CheckpointInfo]:
        infos = self.store.infos
        return [infos[p] for p in self._members.get(group, ()) if p in self._matching and p in infos]

    def _header_cells(self, group: str, members: list[CheckpointInfo]) -> dict[str, object]:
        metrics = [(rows.metric_value(i), i) for i in members if rows.metric_value(i) is not None]
        best = ""
        if metrics:
            name = metrics[0][1].metric.name if metrics[0][1].metric else None
            pick = min if lower_is_better(name) else max
            best = f"{pick(v for v, _ in metrics):.4g}"
        broken = sum(rows.status_of(i) == "broken" for i in members)
        dim = self.style_of("row--dim")
        size = format_bytes(sum(i.size_bytes for i in members), compact=True)
        if group in self.store.live:  # a trainer writes this run now
            status = Text("● live", style=self.style_of("status--live"))
            if broken:
                status.append(f" ✖{broken}", style=self.style_of("status--broken"))
        else:
            status = Text(f"✖ {broken} broken", style=self.style_of("status--broken")) if broken else Text("")
        return {
            "name": self._header_cell(group, len(members)),
            "kind": Text("run", style=dim),
            "step": Text(""),
            "metric": Text(best, justify="right", style=dim),
            "params": Text(""),
            "size": Text(size, justify="right", style=dim),
            "status": status,
        }
