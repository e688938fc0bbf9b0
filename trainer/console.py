"""What the trainer prints while it trains, on the main process only.

On a terminal: one live progress bar per fold (steps, epoch, loss, lr, samples/s, time left) with the
evaluation lines printed above it. Off a terminal (a log file, CI): a plain line every ``log_every``
optimizer steps, plus the evaluation lines. Every step's numbers go to trainer_state.json's
log_history either way (the caller appends what :meth:`StepLog.step` returns).
"""

from __future__ import annotations

import math
import time
import warnings
from collections import deque
from typing import Any

AUTO_LINES_PER_EPOCH = 10
AUTO_MIN_STEPS_BETWEEN_LINES = 50  # a short epoch's progress shows in its evaluation line instead
SMOOTHING_STEPS = 10  # the bar's loss and samples/s are averages over this many steps


def make_console(is_main: bool):
    from rich.console import Console

    # soft_wrap: a log line stays one line in a file whatever width rich guesses for it
    return Console(stderr=True, quiet=not is_main, soft_wrap=True)


def show_warnings_once(is_main: bool) -> None:
    """Each warning (category and text) is shown once per process. A filter cannot do it: any filter
    change (every ``catch_warnings`` block in library code) resets the registries that "default" and
    "once" consult, so a library warning came back at each evaluation. The other processes of a launch
    print the same deprecation notices as the main one, so they keep those to themselves."""
    if getattr(warnings.showwarning, "shows_once", False):
        return
    show, shown = warnings.showwarning, set()

    def show_once(message, category, filename, lineno, file=None, line=None):
        key = (category, str(message))
        if key in shown:
            return
        shown.add(key)
        if is_main or not issubclass(category, (FutureWarning, DeprecationWarning)):
            show(message, category, filename, lineno, file, line)

    show_once.shows_once = True
    warnings.showwarning = show_once


def quiet_libraries(is_main: bool) -> None:
    """No per-load/per-save progress bars from transformers, and each library warning once."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    show_warnings_once(is_main)


def auto_log_every(steps_per_epoch: int) -> int:
    return max(math.ceil(steps_per_epoch / AUTO_LINES_PER_EPOCH), AUTO_MIN_STEPS_BETWEEN_LINES)


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class StepLog:
    """Progress of one fold: a live bar on a terminal, a line every ``log_every`` steps elsewhere."""

    def __init__(self, console, fold: int, total_steps: int, log_every: int, done_steps: int = 0):
        self.console, self.fold, self.total, self.every = console, fold, total_steps, log_every
        self.done_at_start = done_steps
        self.micro_losses: list[float] = []  # micro-batches of the current optimizer step
        self.line_losses: list[float] = []  # optimizer steps since the last line
        self.recent: deque[tuple[float, float, int]] = deque(maxlen=SMOOTHING_STEPS)  # (time, loss, samples)
        self.started = self.last_line = time.perf_counter()
        self.samples_since_line = 0
        self.progress = self.task = None

    @property
    def live(self) -> bool:
        return self.console.is_terminal and not self.console.quiet

    def __enter__(self) -> StepLog:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]fold {task.fields[fold]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("epoch {task.fields[epoch]:.2f}"),
                TextColumn("loss {task.fields[loss]:.4f}"),
                TextColumn("lr {task.fields[lr]:.2e}"),
                TextColumn("{task.fields[rate]:.0f} samples/s"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.progress.start()
            self.task = self.progress.add_task(
                "train", total=self.total, completed=self.done_at_start, fold=self.fold,
                epoch=0.0, loss=float("nan"), lr=0.0, rate=0.0,
            )  # fmt: skip
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def print(self, line: str) -> None:
        """A line above the live bar (or in the log)."""
        self.console.print(line, highlight=False)

    def add_loss(self, loss: float) -> None:
        self.micro_losses.append(loss)

    def step(
        self, step: int, epoch: float, lr: float, grad_norm: float | None, samples: int, skipped: int
    ) -> dict[str, Any]:
        """Record one optimizer step; returns its log_history entry."""
        now = time.perf_counter()
        loss = sum(self.micro_losses) / len(self.micro_losses) if self.micro_losses else float("nan")
        self.micro_losses = []
        entry: dict[str, Any] = {"step": step, "epoch": epoch, "loss": loss, "learning_rate": lr}
        if grad_norm is not None:
            entry["grad_norm"] = grad_norm
        self.recent.append((now, loss, samples))
        self.line_losses.append(loss)
        self.samples_since_line += samples
        if self.progress is not None:
            self.progress.update(
                self.task, completed=step, epoch=epoch, lr=lr,
                loss=sum(x[1] for x in self.recent) / len(self.recent), rate=self._recent_rate(),
            )  # fmt: skip
        elif step % self.every == 0 or step == self.total:
            self._line(step, epoch, lr, skipped, now)
        return entry

    def _recent_rate(self) -> float:
        if len(self.recent) < 2:
            return 0.0
        seconds = self.recent[-1][0] - self.recent[0][0]
        return sum(x[2] for x in list(self.recent)[1:]) / max(seconds, 1e-9)

    def _line(self, step: int, epoch: float, lr: float, skipped: int, now: float) -> None:
        loss = sum(self.line_losses) / len(self.line_losses)
        rate = self.samples_since_line / max(now - self.last_line, 1e-9)
        done_here = step - self.done_at_start
        left = (self.total - step) * (now - self.started) / max(done_here, 1)
        self.print(
            f"fold {self.fold} step {step}/{self.total} epoch {epoch:.2f} loss {loss:.4f} lr {lr:.3e} "
            f"{rate:.0f} samples/s, {_duration(left)} left" + (f", {skipped} skipped" if skipped else "")
        )
        self.line_losses, self.samples_since_line, self.last_line = [], 0, now
