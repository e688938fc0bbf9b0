"""`ckpt-tui ROOT`: browse, inspect, compare, delete, prune and promote checkpoints.

The app renders what ``tui.core`` returns and asks it to act; it owns no business logic. Its model is a
``CheckpointStore``, changed only by message handlers on the UI thread; widgets render it. Disk work runs
in thread workers (``tui.app.tasks``) that get a snapshot of what they need, taken on the UI thread, and
post the small messages of ``tui.app.messages``. ``_post_outcome`` is the one place a worker's exception
becomes a message. The core is imported inside the tasks: the first paint never waits for it (nor for
pandas).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from textual import on, work
from textual.actions import SkipAction
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static
from textual.worker import get_current_worker

from tui.app import messages as msg
from tui.app import rows, tasks
from tui.app.commands import ActionsProvider
from tui.app.keymap import load_keymap
from tui.app.ops import ActionsMixin
from tui.app.store import CheckpointStore
from tui.app.widgets.browser import GROUP_PREFIX, CheckpointBrowser
from tui.app.widgets.detail import TABS, DetailPane
from tui.app.widgets.footer import KeysFooter
from tui.core.model import CheckpointInfo, run_of
from tui.core.text import format_bytes, safe_message, safe_text

if TYPE_CHECKING:
    from tui.core.du import FreeSpace

ZOOMED = "-zoomed"  # screen class: the detail pane full screen


class MainScreen(Screen):
    """The app's first screen. Focus starts on the table: the filter box comes first in the layout, and
    focusing it and then the table rebuilt the footer once more at start-up."""

    AUTO_FOCUS = "#browser"


class CkptApp(ActionsMixin, App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "ckpt-tui"
    COMMANDS = App.COMMANDS | {ActionsProvider}
    ENABLE_COMMAND_PALETTE = True

    # The Footer shows what fits in 80 columns (the ones a first-time user needs); `?` and the command
    # palette list every binding, including those with show=False.
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
        # priority: "/" is handled as it arrives, so keys typed right after it in one burst (a paste, a
        # fast typist over SSH) reach the filter box instead of the table and its bindings.
        Binding("slash", "filter", "Filter", key_display="/", id="app.filter", priority=True),
        Binding("s", "cycle_sort", "Sort", id="app.sort"),
        Binding("R", "reverse_sort", "Reverse sort", id="app.reverse", show=False),
        Binding("z", "zoom", "Zoom detail", id="app.zoom"),
        Binding("d", "delete", "Delete", id="app.delete"),
        Binding("S", "slim", "Slim", id="app.slim", show=False),
        Binding("p", "prune", "Prune", id="app.prune", show=False),
        Binding("P", "promote", "Promote", id="app.promote", show=False),
        Binding("m,space", "mark", "Mark", key_display="m", id="app.mark"),
        Binding("M", "clear_marks", "Unmark all", id="app.unmark_all", show=False),
        Binding("t", "trash", "Trash", id="app.trash", show=False),
        Binding("D", "diff", "Diff", id="app.diff", show=False),
        Binding("f", "fold_metrics", "Folds", id="app.folds", show=False),
        Binding("L", "runs", "Runs", id="app.runs", show=False),
        Binding("u", "undo", "Undo", id="app.undo", show=False),
        Binding("r", "refresh", "Refresh", id="app.refresh", show=False),
        Binding("right_square_bracket", "next_tab", "Next tab", key_display="]", id="app.next_tab"),
        Binding(
            "left_square_bracket",
            "previous_tab",
            "Previous tab",
            key_display="[",
            id="app.prev_tab",
            show=False,
        ),
        *[
            Binding(str(n), f"show_tab('{tab}')", f"{tab.title()} tab", id=f"app.tab_{tab}", show=False)
            for n, tab in enumerate(TABS, start=1)
        ],
        Binding("v", "plot_series", "Plot series", id="app.plot_series", show=False),
        Binding("V", "plot_smoothing", "Smooth plot", id="app.plot_smoothing", show=False),
        Binding("question_mark", "help", "Help", key_display="?", id="app.help"),
    ]
    # Palette entries with no key of their own: (title, action, help).
    PALETTE_ONLY = [("Empty trash", "empty_trash", "remove everything in ROOT/.ckpt-trash (asks first)")]

    def __init__(
        self,
        root: str | Path,
        *,
        poll_interval: float = 2.0,
        inspect_delay: float = 0.1,
        prune_keep: int = 2,
        prune_metric: str | None = None,
        convert_loader: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.root_label = str(root)
        self.poll_interval = poll_interval
        self.inspect_delay = inspect_delay
        self.prune_keep = prune_keep
        self.prune_metric = prune_metric
        # Returns tui.convert (torch-backed): the CLI injects it, the app never imports it; None: promote
        # refuses conversions with the CLI command to run.
        self.convert_loader = convert_loader
        self.promoting = {}
        self.keymap: dict[str, str] = {}  # binding id -> keys, from keymap.toml
        self.store = CheckpointStore()
        self.scan_generation = 0
        self.scanning = False
        self._first_scan = tasks.start_first_scan(self.root)  # reading while the screen is built
        self.free_space: FreeSpace | None = None  # ROOT's filesystem, from the last scan or poll
        self._signature: int | None = None  # the tree as the last scan saw it (scan worker only)
        self._inspected: str | None = None  # the row the detail pane shows or is about to

    def get_default_screen(self) -> Screen:
        return MainScreen(id="_default")

    def notify(self, message: str, *, severity: Any = "information", **kwargs: Any) -> None:
        # Messages name paths and quote files: other people's text, shown escaped and never as markup.
        super().notify(safe_message(message), severity=severity, markup=False, **kwargs)

    # --- layout --------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield Input(placeholder="filter: words in path, kind or status  (enter/esc to return)", id="filter")
        yield CheckpointBrowser(self.store, id="browser")
        yield DetailPane(id="detail")
        yield KeysFooter()

    @property
    def browser(self) -> CheckpointBrowser:
        return self.query_one(CheckpointBrowser)

    @property
    def detail(self) -> DetailPane:
        return self.query_one(DetailPane)

    def on_mount(self) -> None:
        # What is built by now (Textual, the widget tree, every module) lives as long as the app: frozen,
        # the cycle collector's full passes stop walking it again while the first scan streams in (20-40
        # ms of a start). Unfrozen at exit: a process that runs several apps (tests) collects them.
        gc.freeze()
        self._apply_keymap()
        self.browser.focus()
        self.browser.pin_top = True  # until the first scan is done: the user starts at the top
        self._update_status()
        self.start_scan()
        if self.poll_interval > 0:
            self.set_interval(self.poll_interval, self._poll)
        self.set_interval(1.0, lambda: self.promoting and self._update_status())  # promote's seconds

    def on_unmount(self) -> None:
        gc.unfreeze()
        if self._first_scan is not None:  # quit before the first scan began
            self._first_scan.close()

    def _apply_keymap(self) -> None:
        keymap, problem = load_keymap()
        if keymap:
            from tui.app.screens.help import every_binding

            known = {b.id for b in every_binding(self.BINDINGS)}
            unknown = sorted(set(keymap) - known)
            if unknown and problem is None:
                problem = f"keymap.toml: no binding has the id {unknown[0]!r} (? lists the ids); the rest applies"
            self.keymap = keymap
            self.set_keymap(keymap)
        if problem:
            self.notify(problem, severity="warning", timeout=10)

    def _update_status(self) -> None:
        browser = self.browser
        # ROOT goes last: a long path is cut at the edge, the counts and the state never are.
        total = len(self.store.infos)
        count = f"{browser.matching_count}/{total}" if browser.filter_text else f"{total}"
        order = f"sort: {browser.sort_by}{' (reversed)' if browser.reverse else ''}"
        parts = [f"{count} checkpoints", order]
        if browser.filter_text:
            parts.append(escape(f"filter: {safe_text(repr(browser.filter_text))}"))
        if self.store.marked:
            parts.append(f"marked: {len(self.store.marked)}")
        parts += [escape(safe_text(text)) for text in self.promote_status()]
        if self.scanning:
            parts.append("[yellow]scanning…[/yellow]")
        if self.free_space is not None:
            free = self.free_space
            text = f"free {format_bytes(free.free_bytes)} ({free.free_fraction:.0%})"
            parts.append(f"[b red]{text}: low disk space[/b red]" if free.low else text)
        parts.append(f"[b]{escape(safe_text(self.root_label))}[/b]")
        # One line, full width: a new text never changes the layout (a reflow of the screen per scan batch).
        self.query_one("#status", Static).update(" · ".join(parts), layout=False)

    # --- workers --------------------------------------------------------------------------------------

    def _post_outcome(self, work: Callable[[], Message | None], failed: Callable[[str], Message]) -> None:
        """Run a worker's body and post the message it returns; if it raises, post ``failed`` with the
        error in one line (paths relative to ROOT). A failure is shown, never a crash."""
        try:
            outcome = work()
        except Exception as e:
            outcome = failed(tasks.one_line(e, self.root))
        if outcome is not None:
            self.post_message(outcome)

    # --- scanning and live refresh ----------------------------------------------------------------------

    def start_scan(self, *, only_if_changed: bool = False) -> None:
        self.scan_generation += 1
        self.scanning = not only_if_changed
        self._update_status()
        self._scan_worker(self.scan_generation, only_if_changed, self._watched(), tuple(self.store.runs()))

    def _watched(self) -> tuple[str, ...]:
        """Every checkpoint of the runs on screen: their files are compared at each poll."""
        runs = {run_of(info) for info in self.browser.visible_infos()}
        return tuple(path for path, info in self.store.infos.items() if run_of(info) in runs)

    @property
    def _torn_down(self) -> bool:
        """The app is exiting: a late message or timer finds the browser already removed."""
        return not self.screen_stack or not self.screen_stack[0].query(CheckpointBrowser)

    def _poll(self) -> None:
        if self._torn_down:
            return
        if not self.scanning:  # never cancel a scan in flight for a poll
            self.start_scan(only_if_changed=True)

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False)
    def _scan_worker(
        self, generation: int, only_if_changed: bool, watched: tuple[str, ...], runs: tuple[str, ...]
    ) -> None:
        worker = get_current_worker()
        seen: set[str] = set()
        found_runs = set(runs)

        def scan() -> msg.ScanDone | None:
            signature = tasks.tree_signature(self.root, watched=watched)
            if not (only_if_changed and signature == self._signature):
                self._signature = signature
                scanned.append(True)
                first, self._first_scan = self._first_scan, None
                for batch in tasks.scan_batches(self.root, cancelled=lambda: worker.is_cancelled, first=first):
                    seen.update(i.path for i in batch)
                    found_runs.update(run_of(i) for i in batch)
                    self.post_message(msg.ScanBatch(generation, batch))
                if worker.is_cancelled:
                    return None
                self.post_message(msg.ScanDone(generation, seen))
            # A poll, or a complete list: who holds each run's lock and the free space follow.
            live = tasks.live_runs(self.root, found_runs)
            return msg.ScanDone(generation, set(), skipped=True, live=live, free=tasks.free_space(self.root))

        def failed(error: str) -> msg.ScanDone:
            self._signature = None  # scan again at the next poll
            return msg.ScanDone(generation, seen, error=error)

        scanned: list[bool] = []
        self._post_outcome(scan, failed)
        if scanned:
            tasks.save_cache()  # once the list is complete: the user never waits for the cache's writes

    def on_scan_batch(self, message: msg.ScanBatch) -> None:
        if message.generation != self.scan_generation or self._torn_down:
            return
        changes = self.store.upsert(message.infos)
        self.browser.show(changes)
        if self.browser.current_key != self._inspected:
            self._schedule_inspect()  # the first rows arrived, or new rows sorted in above the cursor
        elif self._inspected in _touched(changes):
            self._schedule_inspect(force=True)  # the shown checkpoint changed on disk, or its run did
        self._update_status()

    def on_scan_done(self, message: msg.ScanDone) -> None:
        if message.generation != self.scan_generation or self._torn_down:
            return
        self.scanning = False
        self.browser.pin_top = False
        if message.free is not None:
            self.free_space = message.free
        if message.live is not None and message.live != self.store.live:
            changed = set(message.live) ^ set(self.store.live)
            self.store.live = message.live
            self.browser.refresh_runs(changed | set(message.live))
            if self.browser.current_group in changed and self.browser.current_info is None:
                self._schedule_inspect(force=True)  # the run header shown: its live line changed
        if message.error:
            self.notify(f"Scan of {self.root_label} failed: {message.error}", severity="error", timeout=8)
        elif not message.skipped:
            gone = self.store.forget(set(self.store.infos) - message.seen)
            if gone:
                self.browser.drop(gone)
                self._schedule_inspect()
        self._update_status()

    # --- detail -----------------------------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table is self.browser:
            self._schedule_inspect()

    def _schedule_inspect(self, force: bool = False) -> None:
        key = self.browser.current_key
        if key == self._inspected and not force:
            return
        self._inspected = key
        info = self.browser.current_info
        if info is None:
            self.workers.cancel_group(self, "inspect")  # a row left before its inspection started
            group = self.browser.current_group
            if group is None:
                self.detail.show_message("No checkpoints yet." if not self.scanning else "Scanning…")
            else:
                members = self.store.of_run(group)
                self.detail.show_group(group, members, self.store.live.get(group), list(self.store.infos))
            return
        cached = self.store.inspections.get(info.path)
        if cached is not None:
            self.detail.show_inspection(self.root_label, cached)
            return
        self._inspect_worker(info.path, self.inspect_delay)

    @work(thread=True, exclusive=True, group="inspect", exit_on_error=False)
    def _inspect_worker(self, path: str, delay: float) -> None:
        # Debounced: holding an arrow key over SSH starts one worker per row passed, and each new one
        # cancels the one before; only the one still wanted after ``delay`` reads the disk.
        worker = get_current_worker()
        time.sleep(delay)
        if worker.is_cancelled:
            return
        self._post_outcome(
            lambda: (
                None if worker.is_cancelled else msg.InspectionReady(path, tasks.inspect(self.root, path))
            ),
            lambda error: msg.InspectionReady(path, None, error=error),
        )

    def on_inspection_ready(self, message: msg.InspectionReady) -> None:
        if self._torn_down:
            return
        if message.inspection is not None:
            self.store.inspections[message.path] = message.inspection
            # The inspection checks more than the scan (headers, shards): the row shows what it found.
            shown = self.store.infos.get(message.path, message.inspection.info)
            if rows.status_of(message.inspection.info) != rows.status_of(shown):
                self.browser.show(self.store.upsert([message.inspection.info]))
        if message.path != self.browser.current_key:
            return
        if message.inspection is None:
            self.detail.show_error(
                self.root_label, self.store.infos.get(message.path), message.error or "unknown"
            )
        else:
            self.detail.show_inspection(self.root_label, message.inspection)

    # --- filter and sort --------------------------------------------------------------------------------

    def action_filter(self) -> None:
        # A priority binding sees "/" everywhere: in a text box (this one, promote's, the palette's) or
        # on a modal it is just a character, so let it through.
        if isinstance(self.focused, Input) or self.screen is not self.screen_stack[0]:
            raise SkipAction()
        box = self.query_one("#filter", Input)
        box.add_class("-shown")
        # set_focus now, not focus() (deferred): keys typed right after "/" must reach the input.
        self.set_focus(box)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.browser.set_filter(event.value)
        self._schedule_inspect()
        self._update_status()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._leave_filter()

    def _leave_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if not box.value:
            box.remove_class("-shown")
        self.browser.focus()

    def on_key(self, event) -> None:
        if event.key != "escape" or self.screen is not self.screen_stack[0]:
            return
        if self.focused is self.query_one("#filter", Input):
            event.stop()
            self._leave_filter()
        elif self.screen.has_class(ZOOMED):
            event.stop()
            self.action_zoom()

    # --- detail zoom ------------------------------------------------------------------------------------

    def action_zoom(self) -> None:
        """The detail pane full screen (the table hidden), and back."""
        zoomed = not self.screen.has_class(ZOOMED)
        self.screen.set_class(zoomed, ZOOMED)
        if zoomed:
            self.detail.focus_body()
        else:
            self.browser.focus()

    def on_checkpoint_browser_open_checkpoint(self, message: CheckpointBrowser.OpenCheckpoint) -> None:
        if not self.screen.has_class(ZOOMED):
            self.action_zoom()

    def action_show_tab(self, tab: str) -> None:
        self.detail.show_tab(tab)
        self._follow_tab()

    def action_next_tab(self) -> None:
        self.detail.step_tab(+1)
        self._follow_tab()

    def action_previous_tab(self) -> None:
        self.detail.step_tab(-1)
        self._follow_tab()

    def action_plot_series(self) -> None:
        self._show_plot(self.detail.cycle_series())

    def action_plot_smoothing(self) -> None:
        self._show_plot(self.detail.toggle_smoothing())

    def _show_plot(self, changed: object) -> None:
        """The Training tab after a plot setting changed; None: there is no plot to change."""
        if changed is None:
            self.notify("No training log here: select a checkpoint with a trainer_state.json.", severity="warning")
        else:
            self.action_show_tab("training")

    def _follow_tab(self) -> None:
        if self.screen.has_class(ZOOMED):  # zoomed, the keys scroll the tab on screen
            self.call_after_refresh(self.detail.focus_body)

    def action_cycle_sort(self) -> None:
        order = rows.SORTS
        self.browser.set_sort(order[(order.index(self.browser.sort_by) + 1) % len(order)])
        self._update_status()

    def action_reverse_sort(self) -> None:
        self.browser.set_sort(self.browser.sort_by, reverse=not self.browser.reverse)
        self._update_status()

    # --- fold metrics, refresh, help (actions on the disk: tui.app.ops) --------------------------------

    def action_fold_metrics(self) -> None:
        group = self.browser.current_group
        if group is None:
            self.notify("Select a run first (fold metrics are per run).", severity="warning")
            return
        self._metrics_worker(group)

    @work(thread=True, exclusive=True, group="metrics", exit_on_error=False)
    def _metrics_worker(self, run: str) -> None:
        self._post_outcome(
            lambda: msg.MetricsReady(run, tasks.fold_metrics(self.root, run)),
            lambda error: msg.MetricsReady(run, None, error=error),
        )

    def on_metrics_ready(self, message: msg.MetricsReady) -> None:
        if message.metrics is None:
            self.notify(
                f"No fold metrics: {message.error}. Select a run that has valid_df_fold_<k>.csv files.",
                severity="warning",
                timeout=8,
            )
            return
        from tui.app.screens.fold_metrics import FoldMetricsScreen

        self.push_screen(FoldMetricsScreen(message.run, message.metrics))

    def action_runs(self) -> None:
        from tui.app.screens.runs import RunsScreen

        self.push_screen(RunsScreen(self.root))

    def action_refresh(self) -> None:
        self.store.inspections.clear()
        self._inspected = None
        self.start_scan()

    def action_help(self) -> None:
        from tui.app.screens.help import HelpScreen, every_binding

        self.push_screen(HelpScreen(every_binding(self.BINDINGS), self.keymap))


def _touched(changes: list[tuple[CheckpointInfo | None, CheckpointInfo]]) -> set[str]:
    """The browser keys whose detail a batch of store changes outdates: each checkpoint changed, and the
    header of every run it left or joined."""
    keys = set()
    for old, new in changes:
        keys.add(new.path)
        keys.update(GROUP_PREFIX + run_of(info) for info in (old, new) if info is not None)
    return keys


def make_app(root: str | Path, *, poll_interval: float = 2.0, **options: Any) -> CkptApp:
    """The one factory: the console script and the tests build the same app."""
    return CkptApp(root, poll_interval=poll_interval, **options)
