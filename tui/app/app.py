"""`ckpt-tui ROOT`: browse, inspect, compare, delete, prune and promote checkpoints.

The app renders what ``tui.core`` returns and asks it to act; it owns no business logic. Disk work runs
in thread workers that post the small messages of ``tui.app.messages``; only handlers touch widgets.
Core modules are imported inside the workers: the first paint never waits for them (nor for pandas).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.actions import SkipAction
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import get_current_worker

from tui.app import messages as msg
from tui.app import rows, tasks
from tui.app.commands import ActionsProvider
from tui.app.screens.confirm import ConfirmModal
from tui.app.widgets.browser import CheckpointBrowser
from tui.app.widgets.detail import TABS, DetailPane
from tui.core.model import CheckpointInfo, Inspection, run_of
from tui.core.text import safe_message, safe_text


class CkptApp(App[None]):
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
        Binding("d", "delete", "Delete", id="app.delete"),
        Binding("S", "slim", "Slim", id="app.slim", show=False),
        Binding("p", "prune", "Prune", id="app.prune", show=False),
        Binding("P", "promote", "Promote", id="app.promote", show=False),
        Binding("m", "mark", "Mark", id="app.mark"),
        Binding("D", "diff", "Diff", id="app.diff", show=False),
        Binding("f", "fold_metrics", "Folds", id="app.folds", show=False),
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
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.root_label = str(root)
        self.poll_interval = poll_interval
        self.inspect_delay = inspect_delay
        self.prune_keep = prune_keep
        self.prune_metric = prune_metric
        self.scan_generation = 0
        self.scanning = False
        self.scan_count = 0
        self._signature: int | None = None
        self._inspected: str | None = None
        self._inspect_timer = None
        self._inspections: dict[str, Inspection] = {}
        self.notices: list[tuple[str, str]] = []  # (severity, text) of every notification, newest last

    def notify(self, message: str, *, severity: str = "information", **kwargs: Any) -> None:
        message = safe_message(message)  # messages name paths and quote files: other people's text
        self.notices.append((severity, message))
        super().notify(message, severity=severity, **kwargs)

    @property
    def busy(self) -> bool:
        """A scan, a debounced inspection or a worker is still on its way (tests wait on this)."""
        return (
            self.scanning
            or self._inspect_timer is not None
            or any(w.is_running or w.state.name == "PENDING" for w in self.workers)
        )

    # --- layout --------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield Input(placeholder="filter: words in path, kind or status  (enter/esc to return)", id="filter")
        yield CheckpointBrowser(id="browser")
        yield DetailPane(id="detail")
        yield Footer()

    @property
    def browser(self) -> CheckpointBrowser:
        return self.query_one(CheckpointBrowser)

    @property
    def detail(self) -> DetailPane:
        return self.query_one(DetailPane)

    def on_mount(self) -> None:
        self.browser.focus()
        self.browser.pin_top = True  # until the first scan is done: the user starts at the top
        self._update_status()
        self.start_scan()
        if self.poll_interval > 0:
            self.set_interval(self.poll_interval, self._poll)

    def _update_status(self) -> None:
        browser = self.browser
        # ROOT goes last: a long path is cut at the edge, the counts and the state never are.
        parts = [f"{len(browser.infos)} checkpoints", f"sort: {browser.sort_by}"]
        if browser.filter_text:
            parts.append(escape(f"filter: {safe_text(repr(browser.filter_text))}"))
        if browser.marked:
            parts.append(f"marked: {len(browser.marked)}/2")
        if self.scanning:
            parts.append("[yellow]scanning…[/yellow]")
        parts.append(f"[b]{escape(safe_text(self.root_label))}[/b]")
        self.query_one("#status", Static).update(" · ".join(parts))

    # --- scanning and live refresh ----------------------------------------------------------------------

    def start_scan(self, *, only_if_changed: bool = False) -> None:
        self.scan_generation += 1
        self.scanning = not only_if_changed
        self._update_status()
        self._scan_worker(self.scan_generation, only_if_changed)

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
    def _scan_worker(self, generation: int, only_if_changed: bool) -> None:
        worker = get_current_worker()
        signature = tasks.tree_signature(self.root)
        if only_if_changed and signature == self._signature:
            self.post_message(msg.ScanDone(generation, set(), error=None, skipped=True))
            return
        self._signature = signature
        seen: set[str] = set()
        try:
            from tui.core.scan import iter_checkpoints

            stream = iter_checkpoints(self.root, cancelled=lambda: worker.is_cancelled)
            for batch in tasks.batched(stream, cancelled=lambda: worker.is_cancelled):
                seen.update(i.path for i in batch)
                self.post_message(msg.ScanBatch(generation, batch))
        except Exception as e:  # a scan failure is shown, never a crash
            self._signature = None
            self.post_message(msg.ScanDone(generation, seen, error=tasks.one_line(e, self.root)))
            return
        if not worker.is_cancelled:
            self.post_message(msg.ScanDone(generation, seen))

    def on_scan_batch(self, message: msg.ScanBatch) -> None:
        if message.generation != self.scan_generation or self._torn_down:
            return
        for info in message.infos:
            cached = self._inspections.get(info.path)
            if cached is not None and cached.info != info:
                del self._inspections[info.path]
        self.browser.upsert(message.infos)
        if self.browser.current_key != self._inspected:
            self._schedule_inspect()  # the first rows arrived, or new rows sorted in above the cursor
        elif self._inspected not in self._inspections:
            self._schedule_inspect(force=True)  # the shown checkpoint changed on disk
        self._update_status()

    def on_scan_done(self, message: msg.ScanDone) -> None:
        if message.generation != self.scan_generation or self._torn_down:
            return
        self.scanning = False
        self.browser.pin_top = False
        if message.error:
            self.notify(f"Scan of {self.root_label} failed: {message.error}", severity="error", timeout=8)
        elif not message.skipped:
            gone = set(self.browser.infos) - message.seen
            if gone:
                self.browser.forget(gone)
                for path in gone:
                    self._inspections.pop(path, None)
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
        if self._inspect_timer is not None:
            self._inspect_timer.stop()
            self._inspect_timer = None
        info = self.browser.current_info
        if info is None:
            group = self.browser.current_group
            if group is None:
                self.detail.show_message("No checkpoints yet." if not self.scanning else "Scanning…")
            else:
                members = [i for i in self.browser.infos.values() if run_of(i) == group]
                self.detail.show_group(group, members)
            return
        cached = self._inspections.get(info.path)
        if cached is not None:
            self.detail.show_inspection(self.root_label, cached)
            return

        # Debounced: holding an arrow key over SSH must not queue one inspection per row passed.
        def start() -> None:
            self._inspect_timer = None
            self._inspect_worker(info.path)

        self._inspect_timer = self.set_timer(self.inspect_delay, start)

    @work(thread=True, exclusive=True, group="inspect", exit_on_error=False)
    def _inspect_worker(self, path: str) -> None:
        worker = get_current_worker()
        try:
            from tui.core.inspect import inspect_path

            inspection = inspect_path(self.root, self.root / path)
        except Exception as e:
            self.post_message(msg.InspectionReady(path, None, error=tasks.one_line(e, self.root)))
            return
        if not worker.is_cancelled:
            self.post_message(msg.InspectionReady(path, inspection))

    def on_inspection_ready(self, message: msg.InspectionReady) -> None:
        if message.inspection is not None:
            self._inspections[message.path] = message.inspection
            # The inspection checks more than the scan (headers, shards): the row shows what it found.
            if rows.status_of(message.inspection.info) != rows.status_of(
                self.browser.infos.get(message.path, message.inspection.info)
            ):
                self.browser.upsert([message.inspection.info])
        if message.path != self.browser.current_key:
            return
        if message.inspection is None:
            self.detail.show_error(
                self.root_label, self.browser.infos.get(message.path), message.error or "unknown"
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
        if event.key == "escape" and self.focused is self.query_one("#filter", Input):
            event.stop()
            self._leave_filter()

    def action_show_tab(self, tab: str) -> None:
        self.detail.show_tab(tab)

    def action_next_tab(self) -> None:
        self.detail.step_tab(+1)

    def action_previous_tab(self) -> None:
        self.detail.step_tab(-1)

    def action_cycle_sort(self) -> None:
        order = rows.SORTS
        self.browser.set_sort(order[(order.index(self.browser.sort_by) + 1) % len(order)])
        self._update_status()

    # --- destructive actions: plan in a worker -> ConfirmModal -> execute in a worker -------------------

    def _selected_or_refuse(self, verb: str) -> CheckpointInfo | None:
        info = self.browser.current_info
        if info is None:
            self.notify(f"Nothing to {verb}: select a checkpoint row first.", severity="warning")
        return info

    def action_delete(self) -> None:
        if info := self._selected_or_refuse("delete"):
            self._plan_worker("delete", [info.path])

    def action_slim(self) -> None:
        if info := self._selected_or_refuse("slim"):
            self._plan_worker("slim", [info.path])

    def action_prune(self) -> None:
        group = self.browser.current_group
        if group is None:
            self.notify("Nothing to prune: no checkpoints yet.", severity="warning")
            return
        self._plan_worker("prune", [group])

    def action_empty_trash(self) -> None:
        self._plan_worker("trash-empty", [])

    def _infos(self, group: str | None = None) -> list[CheckpointInfo]:
        infos = list(self.browser.infos.values())
        return infos if group is None else [i for i in infos if run_of(i) == group]

    def _prune_metric(self, infos: list[CheckpointInfo]) -> str:
        """The --metric option, else the metric most checkpoints of the run report (ties: by name)."""
        if self.prune_metric:
            return self.prune_metric
        names = sorted(i.metric.name for i in infos if i.metric and i.metric.name)
        return max(names, key=names.count) if names else "loss"

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False)
    def _plan_worker(self, action: str, paths: list[str]) -> None:
        try:
            from tui.core import actions

            if action == "delete":
                plan = actions.plan_delete(self.root, paths, self._infos())
            elif action == "slim":
                plan = actions.plan_slim(self.root, paths, self._infos())
            elif action == "prune":
                infos = self._infos(paths[0])
                plan = actions.plan_prune(self.root, infos, self.prune_keep, self._prune_metric(infos))
            else:
                plan = actions.plan_trash_empty(self.root)
        except Exception as e:
            self.post_message(msg.PlanReady(action, None, error=tasks.one_line(e, self.root)))
            return
        self.post_message(msg.PlanReady(action, plan))

    def on_plan_ready(self, message: msg.PlanReady) -> None:
        plan = message.plan
        if message.error or plan is None:
            self.notify(f"Cannot {message.action}: {message.error}", severity="error", timeout=8)
            return
        if not plan.items:
            # Everything asked for was refused (the reasons are in the summary), or there is nothing to do.
            severity = "error" if plan.refusals else "information"
            self.notify(plan.summary or f"Nothing to {message.action}.", severity=severity, timeout=10)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._execute_worker(message.action, plan)
            else:
                self.notify(f"{message.action.capitalize()} cancelled; nothing changed.")

        self.push_screen(ConfirmModal.for_plan(message.action, plan), answered)

    @work(thread=True, exclusive=True, group="action", exit_on_error=False)
    def _execute_worker(self, action: str, plan: Any) -> None:
        try:
            from tui.core import actions

            result = actions.execute(plan)
        except Exception as e:
            self.post_message(
                msg.ActionDone(action, False, f"{action} failed: {tasks.one_line(e, self.root)}")
            )
            return
        self.post_message(msg.ActionDone(action, result.ok, result.summary))

    def action_undo(self) -> None:
        self._undo_worker()

    @work(thread=True, exclusive=True, group="action", exit_on_error=False)
    def _undo_worker(self) -> None:
        try:
            from tui.core import actions

            result = actions.undo_last(self.root)
        except Exception as e:
            self.post_message(msg.ActionDone("undo", False, f"undo failed: {tasks.one_line(e, self.root)}"))
            return
        self.post_message(msg.ActionDone("undo", result.ok, result.summary))

    def on_action_done(self, message: msg.ActionDone) -> None:
        self.notify(message.text, severity="information" if message.ok else "error", timeout=8)
        if message.changed_disk:
            self._inspections.clear()
            self.start_scan()

    # --- promote ----------------------------------------------------------------------------------------

    def action_promote(self) -> None:
        info = self._selected_or_refuse("promote")
        if info is None:
            return
        from tui.app.screens.promote import PromoteScreen

        def answered(target: str | None) -> None:
            if target is None:
                self.notify("Promote cancelled.")
            else:
                self.notify(f"Promoting {info.path}…", timeout=4)
                self._promote_worker(info.path, target or None)

        self.push_screen(PromoteScreen(info.path), answered)

    @work(thread=True, exclusive=True, group="action", exit_on_error=False)
    def _promote_worker(self, path: str, target: str | None) -> None:
        # A relative target is relative to ROOT (what the user sees), not to where the app was started.
        to = None if not target else (Path(target) if Path(target).is_absolute() else self.root / target)
        try:
            from tui.core.promote import promote

            # No converter: the app never imports torch; conversions are refused with the CLI command to run.
            result = promote(self.root, self.root / path, to, infos=self._infos())
        except Exception as e:
            self.post_message(
                msg.ActionDone("promote", False, f"Promote refused: {tasks.one_line(e, self.root)}", False)
            )
            return
        text = f"Promoted {result.source} -> {result.target} ({len(result.files)} files)."
        if result.problems:
            text += " Problems: " + "; ".join(result.problems)
        self.post_message(msg.ActionDone("promote", not result.problems, text))

    # --- marks, diff, fold metrics, help ------------------------------------------------------------------

    def action_mark(self) -> None:
        info = self._selected_or_refuse("mark")
        if info is not None:
            marked = self.browser.toggle_mark(info.path)
            self._update_status()
            if len(marked) == 2:
                self.notify("Two checkpoints marked: D shows their diff.")

    def action_diff(self) -> None:
        marked = self.browser.marked
        if len(marked) != 2:
            self.notify(
                f"Diff needs two marked checkpoints (m marks); {len(marked)} marked.", severity="warning"
            )
            return
        self._diff_worker(marked[0], marked[1])

    @work(thread=True, exclusive=True, group="diff", exit_on_error=False)
    def _diff_worker(self, left: str, right: str) -> None:
        try:
            from tui.core.inspect import inspect_path
            from tui.core.weights import tensor_table

            a, b = inspect_path(self.root, self.root / left), inspect_path(self.root, self.root / right)
            config = rows.config_diff(a.config, b.config)
            tensors = rows.tensor_diff(tensor_table(self.root / left), tensor_table(self.root / right))
        except Exception as e:
            self.post_message(msg.DiffReady(left, right, error=tasks.one_line(e, self.root)))
            return
        self.post_message(msg.DiffReady(left, right, config, tensors))

    def on_diff_ready(self, message: msg.DiffReady) -> None:
        if message.error:
            self.notify(f"Diff failed: {message.error}", severity="error", timeout=8)
            return
        from tui.app.screens.diff import DiffScreen

        self.push_screen(DiffScreen(message.left, message.right, message.config_diff, message.tensor_diff))

    def action_fold_metrics(self) -> None:
        group = self.browser.current_group
        if group is None:
            self.notify("Select a run first (fold metrics are per run).", severity="warning")
            return
        self._metrics_worker(group)

    @work(thread=True, exclusive=True, group="metrics", exit_on_error=False)
    def _metrics_worker(self, run: str) -> None:
        try:
            from tui.core.metrics import compute_metrics

            metrics = compute_metrics(self.root / run if run != "." else self.root)
        except Exception as e:
            self.post_message(msg.MetricsReady(run, None, error=tasks.one_line(e, self.root)))
            return
        self.post_message(msg.MetricsReady(run, metrics))

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

    def action_refresh(self) -> None:
        self._inspections.clear()
        self._inspected = None
        self.start_scan()

    def action_help(self) -> None:
        from tui.app.screens.help import HelpScreen

        self.push_screen(HelpScreen([*self.BINDINGS, *CheckpointBrowser.BINDINGS]))


def make_app(root: str | Path, *, poll_interval: float = 2.0, **options: Any) -> CkptApp:
    """The one factory: the console script and the tests build the same app."""
    return CkptApp(root, poll_interval=poll_interval, **options)
