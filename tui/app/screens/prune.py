"""`p`: prune one run. Choose K, the metric (one the run's checkpoints report) and the mode; the screen
shows the plan as it would run (``ckpt-tui prune``'s plan_prune, over this run): what goes with its bytes,
what stays and why, and the bytes freed. Enter hands that plan to the one confirmation modal."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static
from textual.worker import get_current_worker

from tui.app import tasks
from tui.app.rows import cell
from tui.app.screens.confirm import plan_table
from tui.core.model import CheckpointInfo
from tui.core.text import format_bytes, lower_is_better, safe_text

if TYPE_CHECKING:
    from tui.core.actions import Plan

MODES = (("auto", None), ("max: higher is better", "max"), ("min: lower is better", "min"))
Settings = tuple[int, str, "str | None"]


def kept_table(kept: list[tuple[str, str]]) -> Table:
    table = Table(box=None, expand=True, show_header=True, padding=(0, 1))
    table.add_column("stays", overflow="fold", ratio=3)
    table.add_column("why", overflow="fold", ratio=2, style="dim")
    for path, reason in kept:
        table.add_row(cell(path), cell(reason))
    return table


class PruneScreen(ModalScreen["Plan | None"]):
    """Dismisses with the plan previewed for the settings on screen, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prune.cancel")]

    @dataclass
    class Previewed(Message):
        settings: Settings
        plan: Plan | None
        error: str | None = None

    def __init__(
        self, root: Path, run: str, infos: list[CheckpointInfo], keep: int, metric: str | None
    ) -> None:
        super().__init__()
        self.root, self.run, self.infos = root, run, infos
        self.metrics = tasks.metric_choices(infos)
        chosen = tasks.prune_metric(infos, metric)
        if chosen not in self.metrics:
            self.metrics.insert(0, chosen)
        self.initial = (keep, chosen)
        self.plan: Plan | None = None
        self.plan_for: Settings | None = None

    def compose(self) -> ComposeResult:
        keep, metric = self.initial
        with Vertical(id="prune-box"):
            yield Static(f"Prune {safe_text(self.run)}", id="prune-title", markup=False)
            with Horizontal(id="prune-options"):
                yield Label("keep top K")
                yield Input(str(keep), id="prune-keep", type="integer", restrict=r"\d{0,4}")
                yield Label("by")
                yield Select(
                    [(safe_text(m), m) for m in self.metrics], value=metric, allow_blank=False, id="prune-metric"
                )
                yield Select(MODES, value=None, allow_blank=False, id="prune-mode")
            yield Static("", id="prune-summary", markup=False)
            with VerticalScroll(id="prune-preview"):
                yield Static("", id="prune-goes")
            yield Horizontal(
                Button("Review and confirm", id="prune-go", variant="error"),
                Static("[b]enter[/b] review and confirm   [b]tab[/b] next field   [b]esc[/b] cancel", classes="hint"),
                id="prune-keys",
            )

    def on_mount(self) -> None:
        self.query_one("#prune-keep", Input).focus()
        self._preview()

    @property
    def settings(self) -> Settings | None:
        text = self.query_one("#prune-keep", Input).value.strip()
        if not text.isdigit():
            return None
        metric = self.query_one("#prune-metric", Select).value
        mode = self.query_one("#prune-mode", Select).value
        return int(text), str(metric), mode if isinstance(mode, str) else None

    @on(Input.Changed, "#prune-keep")
    @on(Select.Changed)
    def _preview(self) -> None:
        settings = self.settings
        if settings is None:
            self.query_one("#prune-summary", Static).update("K must be a whole number, 0 or more.")
            return
        self._plan_worker(settings)

    @work(thread=True, exclusive=True, group="prune-preview", exit_on_error=False)
    def _plan_worker(self, settings: Settings) -> None:
        worker = get_current_worker()
        keep, metric, mode = settings
        try:
            message = self.Previewed(settings, tasks.plan(self.root, "prune", [self.run], self.infos, keep, metric, mode))
        except Exception as e:  # a bad setting is a line on screen, never a crash
            message = self.Previewed(settings, None, tasks.one_line(e, self.root))
        if not worker.is_cancelled:
            self.post_message(message)

    def on_prune_screen_previewed(self, message: Previewed) -> None:
        if message.settings != self.settings:
            return  # the settings changed meanwhile: a newer preview is coming
        self.plan, self.plan_for = message.plan, message.settings
        summary = self.query_one("#prune-summary", Static)
        goes = self.query_one("#prune-goes", Static)
        if message.plan is None:
            summary.update(f"Cannot plan: {safe_text(message.error)}")  # an error may quote a file name
            goes.update("")
            return
        plan = message.plan
        keep, metric, mode = message.settings
        lower = lower_is_better(metric) if mode is None else mode == "min"
        summary.update(
            f"{'lower' if lower else 'higher'} {safe_text(metric)} is better · goes: {len(plan.items)} "
            f"({format_bytes(plan.total_bytes)} freed) · stays: {len(plan.kept)}"
        )
        items = [(i.path, i.bytes, i.what) for i in plan.items]
        refusals = [(r.path, r.reason) for r in plan.refusals]
        kept = [(k.path, k.reason) for k in plan.kept]
        goes.update(Group(plan_table(items, refusals) if items or refusals else "Nothing goes.", kept_table(kept)))

    @on(Input.Submitted)
    @on(Button.Pressed, "#prune-go")
    def _go(self) -> None:
        if self.plan is None or self.plan_for != self.settings:
            self.app.notify("Wait for the preview of these settings.", severity="warning")
            return
        self.dismiss(self.plan)

    def action_cancel(self) -> None:
        self.dismiss(None)
