"""Per-fold metrics of one run (n, accuracy, macro F1, log loss) + OOF row + mean ± std; best fold marked."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from tui.core.text import format_value, lower_is_better, safe_text

METRIC_COLUMNS = ("n", "accuracy", "f1_macro", "log_loss")


def _fmt(value: Any) -> str:
    return format_value(value, ".4f", missing="–")


def best_fold(folds: dict[str, dict], metric: str = "f1_macro") -> str | None:
    scored = {k: v.get(metric) for k, v in folds.items() if isinstance(v.get(metric), (int, float))}
    if not scored:
        return None
    pick = min if lower_is_better(metric) else max
    return pick(scored, key=lambda k: scored[k])


class FoldMetricsScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f", "close", "Close", id="folds.close")]

    def __init__(self, run: str, metrics: dict[str, Any]) -> None:
        super().__init__()
        self.run = run
        self.metrics = metrics

    def compose(self) -> ComposeResult:
        with Vertical(id="folds-box"):
            yield Static(f"Fold metrics · {safe_text(self.run)}", id="folds-title", markup=False)
            yield DataTable(id="folds-table", cursor_type="row")
            yield Static(self._columns_note(), classes="hint", id="folds-note")

    def _columns_note(self) -> Text:
        used = self.metrics.get("columns")
        note = "★ best fold by macro F1   esc close"
        if isinstance(used, dict) and used:
            columns = ", ".join(f"{k}={v}" for k, v in used.items() if not isinstance(v, (dict, list)))
            note = f"columns: {safe_text(columns)}\n{note}"
        return Text(note)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("fold", key="fold")
        for col in METRIC_COLUMNS:
            table.add_column(col, key=col)
        folds: dict[str, dict] = self.metrics.get("folds") or {}
        best = best_fold(folds)
        for k in sorted(folds, key=lambda s: (len(s), s)):
            label = f"★ {k}" if k == best else f"  {k}"
            table.add_row(label, *(_fmt(folds[k].get(c)) for c in METRIC_COLUMNS), key=f"fold-{k}")
        oof = self.metrics.get("oof") or {}
        table.add_row("OOF", *(_fmt(oof.get(c)) for c in METRIC_COLUMNS), key="oof")
        mean, std = self.metrics.get("mean") or {}, self.metrics.get("std") or {}
        table.add_row(
            "mean±std",
            "",
            *(
                f"{mean[c]:.4f}±{std.get(c, 0.0):.4f}" if isinstance(mean.get(c), (int, float)) else "–"
                for c in METRIC_COLUMNS[1:]
            ),
            key="mean",
        )
        if best is not None:
            table.move_cursor(row=table.get_row_index(f"fold-{best}"))

    def action_close(self) -> None:
        self.dismiss(None)
