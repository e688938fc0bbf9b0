"""The Runs screen: every K-fold run under ROOT ranked by OOF metric (the table of ``ckpt-tui runs``), the
folds of the highlighted run, two runs compared, and an ensemble of folds chosen across runs exported.

Keys: ``m`` marks a run for comparison (the last two marked count), ``c`` compares them; ``space`` on a
fold toggles it into the ensemble (on a run: all its folds); ``e`` exports the ensemble. The leaderboard,
the ensemble's OOF metric and the export run in thread workers (``tui.core.runs`` / ``tui.core.ensemble``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, Static

from tui.app.rows import cell
from tui.core.text import format_value, safe_message, safe_text

SELECTED = "✓"


class BoardReady(Message):
    def __init__(self, board: Any = None, error: str | None = None) -> None:
        super().__init__()
        self.board, self.error = board, error


class EnsembleScored(Message):
    def __init__(
        self, key: tuple, oof: dict | None, error: str | None = None, path: str | None = None
    ) -> None:
        super().__init__()
        self.key, self.oof, self.error, self.path = key, oof, error, path


def _fmt(value: Any) -> str:
    return format_value(value, ".4f")


class RunsScreen(Screen[None]):
    CSS_PATH = "runs.tcss"
    BINDINGS = [
        Binding("escape,q", "close", "Close", id="runs.close"),
        Binding("m", "mark", "Mark to compare", id="runs.mark"),
        Binding("c", "compare", "Compare two", id="runs.compare"),
        Binding("space", "select", "Ensemble ±", key_display="space", id="runs.select"),
        Binding("e", "export", "Export ensemble", id="runs.export"),
        Binding("r", "reload", "Reload", id="runs.reload"),
    ]

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = Path(root)
        self.board: Any = None
        self.marked: list[str] = []
        self.chosen: dict[str, set[int]] = {}  # run path -> folds in the ensemble
        self.oof: dict | None = None

    def compose(self) -> ComposeResult:
        yield Static("Runs · loading…", id="runs-title", markup=False)
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-folds-title", markup=False)
        yield DataTable(id="runs-folds", cursor_type="row")
        yield Static("ensemble: nothing chosen", id="runs-ensemble", markup=False)
        yield Static(
            "m mark · c compare two · space fold ± ensemble (on a run: all its folds) · e export · "
            "tab switch table · esc close",
            classes="hint",
        )

    def on_mount(self) -> None:
        self.action_reload()

    # --- loading -----------------------------------------------------------------------------------

    def action_reload(self) -> None:
        self._load(self.root)

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False)
    def _load(self, root: Path) -> None:
        from tui.core.runs import leaderboard

        try:
            self.post_message(BoardReady(leaderboard(root)))
        except Exception as e:  # a failure is shown, never a crash
            self.post_message(BoardReady(error=safe_message(e)))

    def on_board_ready(self, message: BoardReady) -> None:
        title = self.query_one("#runs-title", Static)
        if message.board is None:
            title.update(f"Runs · cannot list: {message.error}")
            return
        from tui.core.runs import table as board_table

        self.board = message.board
        direction = "lower" if self.board.lower_is_better else "higher"
        title.update(
            f"Runs under {safe_text(self.root)} · {len(self.board.runs)} ranked by out-of-fold "
            f"{safe_text(self.board.metric)} ({direction} is better)"
        )
        headers, rows = board_table(self.board)
        table = self.query_one("#runs-table", DataTable)
        table.clear(columns=True)
        for name in ["", "ens", *headers]:
            table.add_column(cell(name), key=name or "mark")
        for run, cells in zip(self.board.runs, rows, strict=True):
            table.add_row(*self._flags(run.path), *(cell(c) for c in cells), key=run.path)
        table.focus()
        self._show_folds()

    def _flags(self, path: str) -> list:
        mark = "AB"[self.marked.index(path)] if path in self.marked else ""
        chosen = self.chosen.get(path)
        return [cell(mark), cell(str(len(chosen)) if chosen else "")]

    # --- the highlighted run's folds ---------------------------------------------------------------

    def current_run(self) -> Any:
        table = self.query_one("#runs-table", DataTable)
        if self.board is None or not self.board.runs or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((r for r in self.board.runs if r.path == key), None)

    @on(DataTable.RowHighlighted, "#runs-table")
    def _highlighted(self) -> None:
        self._show_folds()

    def _show_folds(self) -> None:
        run = self.current_run()
        folds = self.query_one("#runs-folds", DataTable)
        cursor = folds.cursor_row
        folds.clear(columns=True)
        if run is None:
            return
        metric = self.board.metric
        self.query_one("#runs-folds-title", Static).update(f"folds of {safe_text(run.path)}")
        for name in ("ens", "fold", "n", metric):
            folds.add_column(cell(name), key=name)
        chosen = self.chosen.get(run.path, set())
        for k in sorted(run.folds, key=int):
            f = run.folds[k]
            folds.add_row(cell(SELECTED if int(k) in chosen else ""), cell(k), cell(_fmt(f.get("n"))),
                          cell(_fmt(f.get(metric))), key=k)  # fmt: skip
        if folds.row_count:
            folds.move_cursor(row=min(cursor, folds.row_count - 1))

    def _refresh_flags(self, path: str) -> None:
        table = self.query_one("#runs-table", DataTable)
        mark, ens = self._flags(path)
        table.update_cell(path, "mark", mark)
        table.update_cell(path, "ens", ens)

    # --- marking and comparing ---------------------------------------------------------------------

    def action_mark(self) -> None:
        run = self.current_run()
        if run is None:
            return
        before = list(self.marked)
        if run.path in self.marked:
            self.marked.remove(run.path)
        else:
            self.marked = (self.marked + [run.path])[-2:]
        for path in set(before) | set(self.marked):
            self._refresh_flags(path)

    def action_compare(self) -> None:
        if len(self.marked) != 2:
            self.app.notify("Mark two runs with m first, then compare with c.", severity="warning")
            return
        runs = {r.path: r for r in self.board.runs}
        self.app.push_screen(RunCompareScreen(runs[self.marked[0]], runs[self.marked[1]], self.board.metric))

    # --- the ensemble ------------------------------------------------------------------------------

    def action_select(self) -> None:
        run = self.current_run()
        if run is None:
            return
        chosen = self.chosen.setdefault(run.path, set())
        folds = self.query_one("#runs-folds", DataTable)
        usable = {int(k) for k, f in run.folds.items() if f.get("n") is not None}
        if self.focused is folds and folds.row_count:
            k = int(folds.coordinate_to_cell_key(folds.cursor_coordinate).row_key.value)
            chosen.symmetric_difference_update({k})
        else:  # on a run: all its usable folds, or none when they all were chosen
            if usable <= chosen:
                chosen.clear()
            else:
                chosen.update(usable)
        if not chosen:
            del self.chosen[run.path]
        self._refresh_flags(run.path)
        self._show_folds()
        self._score()

    def members(self) -> list:
        from tui.core.ensemble import Member

        return [Member(self.root / run, k) for run in sorted(self.chosen) for k in sorted(self.chosen[run])]

    def _key(self) -> tuple:
        return tuple((run, tuple(sorted(folds))) for run, folds in sorted(self.chosen.items()))

    def _score(self) -> None:
        self.oof = None
        status = self.query_one("#runs-ensemble", Static)
        if not self.chosen:
            status.update("ensemble: nothing chosen")
            return
        status.update("ensemble: computing the OOF metric…")
        self._score_worker(self._key(), self.members())

    @work(thread=True, exclusive=True, group="ensemble", exit_on_error=False)
    def _score_worker(self, key: tuple, members: list) -> None:
        from tui.core.ensemble import oof_metrics

        try:
            self.post_message(EnsembleScored(key, oof_metrics(members)))
        except Exception as e:
            self.post_message(EnsembleScored(key, None, safe_message(e)))

    def on_ensemble_scored(self, message: EnsembleScored) -> None:
        if message.path is not None:
            self._exported(message)
            return
        if message.key != self._key():
            return  # the choice changed since
        status = self.query_one("#runs-ensemble", Static)
        if message.oof is None:
            status.update(f"ensemble: {message.error}")
            return
        self.oof = message.oof
        status.update("ensemble: " + self.describe(message.oof))

    def describe(self, oof: dict) -> str:
        folds = sum(len(f) for f in self.chosen.values())
        value = oof.get(self.board.metric)
        return (
            f"{folds} fold models from {oof['runs']} runs · OOF {safe_text(self.board.metric)} {_fmt(value)} "
            f"over {oof['n']} rows"
            + (f" ({oof['rows_left_out']} not in every run)" if oof["rows_left_out"] else "")
        )

    def action_export(self) -> None:
        if not self.chosen:
            self.app.notify("Choose folds with space first (on a run: all its folds).", severity="warning")
            return
        from tui.core.commit import utc_now

        stamp = utc_now().replace(":", "").replace("-", "")
        default = self.root / "ensembles" / f"ensemble-{stamp}.json"
        self.app.push_screen(ExportScreen(default), self._export_to)

    def _export_to(self, path: str | None) -> None:
        if path:
            target = Path(path) if Path(path).is_absolute() else self.root / path
            self._export_worker(self._key(), self.members(), target, self.board.metric)

    @work(thread=True, exclusive=True, group="ensemble-export", exit_on_error=False)
    def _export_worker(self, key: tuple, members: list, target: Path, metric: str) -> None:
        from tui.core.ensemble import write_spec

        try:
            spec = write_spec(members, target, metric=metric)
            self.post_message(EnsembleScored(key, spec["oof"], path=str(target)))
        except Exception as e:
            self.post_message(EnsembleScored(key, None, safe_message(e), path=str(target)))

    def _exported(self, message: EnsembleScored) -> None:
        if message.oof is None:
            self.app.notify(f"Ensemble not written: {message.error}", severity="error", timeout=10)
            return
        self.app.notify(
            f"Wrote {safe_text(message.path)}: {self.describe(message.oof)}. Predict with "
            f"bin/predict.py --ensemble FILE INPUT.csv",
            timeout=12,
        )

    def action_close(self) -> None:
        self.dismiss(None)


class ExportScreen(ModalScreen[str | None]):
    """Where to write the ensemble spec (relative paths are under ROOT)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="export.cancel")]

    def __init__(self, default: Path) -> None:
        super().__init__()
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Static("Export ensemble spec to (enter writes, esc cancels):", markup=False)
            yield Input(value=str(self.default), id="export-path")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class RunCompareScreen(ModalScreen[None]):
    """Two runs: their config keys that differ, and their per-fold metric side by side."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="compare.close")]

    def __init__(self, a: Any, b: Any, metric: str) -> None:
        super().__init__()
        self.a, self.b, self.metric = a, b, metric

    def compose(self) -> ComposeResult:
        with Vertical(id="compare-box"):
            yield Static(f"A: {safe_text(self.a.path)}\nB: {safe_text(self.b.path)}", id="compare-title",
                         markup=False)  # fmt: skip
            yield DataTable(id="compare-config", cursor_type="row")
            yield DataTable(id="compare-folds", cursor_type="row")
            yield Static("esc close", classes="hint")

    def on_mount(self) -> None:
        from tui.core.diff import config_changes

        config = self.query_one("#compare-config", DataTable)
        config.add_columns("config key", "A", "B")
        changes = config_changes(self.a.config, self.b.config)
        for change in changes:
            config.add_row(cell(change.key), cell(format_value(change.a)), cell(format_value(change.b)))
        if not changes:
            config.add_row(cell("(no config key differs)"), cell(""), cell(""))
        folds = self.query_one("#compare-folds", DataTable)
        folds.add_columns("fold", cell(f"A {self.metric}"), cell(f"B {self.metric}"))
        for k in sorted(set(self.a.folds) | set(self.b.folds), key=int):
            folds.add_row(
                cell(k), *(cell(_fmt(r.folds.get(k, {}).get(self.metric))) for r in (self.a, self.b))
            )
        folds.add_row(cell("OOF"), cell(_fmt(self.a.oof)), cell(_fmt(self.b.oof)))
        folds.add_row(
            cell("mean ± std"), *(cell(f"{_fmt(r.mean)} ± {_fmt(r.std)}") for r in (self.a, self.b))
        )

    def action_close(self) -> None:
        self.dismiss(None)
