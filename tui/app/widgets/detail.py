"""Detail tabs for the highlighted checkpoint: Overview, Config, Tokenizer, Weights, Training, Files.

It renders an ``Inspection`` as given; every field may be None (unknown) and is shown as such.
The plot widget (textual-plotext, which imports plotext) is built the first time a training log is shown,
not at start-up: most users look at the table long before they open a plot.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static, TabbedContent, TabPane

from tui.app import rows
from tui.core.diff import flatten
from tui.core.model import CheckpointInfo, Inspection
from tui.core.text import format_bytes, safe_text

if TYPE_CHECKING:
    from tui.core.pickle_scan import PickleReport
    from tui.core.weights import WeightsSummary

TABS = ("overview", "config", "tokenizer", "weights", "training", "files")


def _kv_table(pairs: list[tuple[str, Any]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(rows.cell(key), value if isinstance(value, Text) else rows.cell(_short(value)))
    return table


def _short(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, (dict, list)):
        return safe_text(json.dumps(value, default=str), 200)
    return safe_text(value)


def _problems(problems: list[str], style_of: rows.StyleOf) -> Text:
    if not problems:
        return Text("none", style=style_of("status--none"))
    return Text("\n".join(f"✖ {safe_text(p)}" for p in problems), style=style_of("status--broken"))


def overview_renderable(
    root: str, info: CheckpointInfo, style_of: rows.StyleOf, manifest: dict | None = None
) -> Table:
    # Status and problems first: in 80x24 they are what must be seen without scrolling.
    pairs: list[tuple[str, Any]] = [
        ("path", info.path),
        ("status", rows.badge(info, style_of)),
        ("problems", _problems(info.problems, style_of)),
        ("kind", info.kind),
        ("size", f"{format_bytes(info.size_bytes, compact=True)} ({info.size_bytes:,} bytes)"),
        ("metric", f"{info.metric.name} = {info.metric.value}" if info.metric else None),
        ("step", info.step),
        ("epoch", info.epoch),
        ("fold", info.fold),
        ("run", info.run),
        ("absolute", f"{root.rstrip('/')}/{info.path}"),
        ("parameters", f"{info.parameters:,}" if info.parameters is not None else None),
        ("tensors", info.tensors),
        ("dtypes", ", ".join(f"{k}: {v:,}" for k, v in info.dtypes.items()) if info.dtypes else None),
    ]
    if manifest:
        pairs.append(("manifest", f"{manifest.get('kind')} · {len(manifest.get('files') or {})} files"))
    return _kv_table(pairs)


def weights_renderable(weights: WeightsSummary | PickleReport | None, style_of: rows.StyleOf) -> Any:
    if weights is None:
        return Text("No weights found in this checkpoint.", style="dim")
    parameters = f"{weights.parameters:,}" if weights.parameters is not None else None
    if weights.source == "pickle":
        head = [("tensors", weights.tensors), ("parameters", parameters), ("format", weights.format)]
    else:
        bytes_ = format_bytes(weights.bytes, compact=True)
        head = [
            ("tensors", weights.tensors),
            ("parameters", parameters),
            ("bytes", bytes_),
            ("shards", weights.shards),
        ]
    parts: list[Any] = [_kv_table(head)]
    if weights.dtypes:
        parts.append(_count_table("dtypes", "dtype", weights.dtypes))
    if weights.source == "pickle":
        return Group(*parts)
    if weights.modules:
        parts.append(_count_table("modules", "module", weights.modules))
    if weights.largest:
        table = Table(title="largest tensors", title_justify="left")
        for col in ("name", "dtype", "shape", "parameters"):
            table.add_column(col, justify="right" if col == "parameters" else "left", overflow="fold")
        for t in weights.largest[:15]:
            table.add_row(
                rows.cell(t["name"]),
                rows.cell(t["dtype"]),
                rows.cell(list(t["shape"])),
                f"{t['parameters']:,}",
            )
        parts.append(table)
    if weights.files:
        table = Table(title="shards", title_justify="left")
        table.add_column("file", overflow="fold")
        table.add_column("tensors", justify="right")
        table.add_column("size", justify="right")
        for f in weights.files:
            size = format_bytes(f["size_bytes"], compact=True)
            table.add_row(rows.cell(f["path"]), _short(f["tensors"]), size)
        parts.append(table)
    if weights.problems:
        parts.append(_problems(weights.problems, style_of))
    return Group(*parts)


def _count_table(title: str, what: str, counts: dict[str, int]) -> Table:
    """``what`` -> parameters, largest first."""
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column(what)
    table.add_column("parameters", justify="right")
    for name, count in sorted(counts.items(), key=lambda kv: -kv[1]):
        table.add_row(rows.cell(name), f"{count:,}")
    return table


def files_renderable(files: list[dict]) -> Any:
    if not files:
        return Text("No files.", style="dim")
    table = Table(expand=False)
    table.add_column("file", overflow="fold")
    table.add_column("size", justify="right")
    for f in files:
        table.add_row(rows.cell(f.get("path")), format_bytes(f.get("size_bytes"), compact=True))
    total = sum(f.get("size_bytes") or 0 for f in files)
    table.caption = f"{len(files)} files, {format_bytes(total, compact=True)}"
    return table


def training_series(state: dict | None) -> dict[str, tuple[list[float], list[float]]]:
    """``{series: (steps, values)}`` for loss and every eval_* number in the trainer_state log history."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for entry in (state or {}).get("log_history") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), (int, float)):
            continue
        for key, value in entry.items():
            if key in ("loss", "train_loss") or key.startswith("eval_"):
                if (
                    isinstance(value, (int, float))
                    and not isinstance(value, bool)
                    and "runtime" not in key
                    and "per_second" not in key
                ):
                    xs, ys = series.setdefault(key, ([], []))
                    xs.append(float(entry["step"]))
                    ys.append(float(value))
    return series


class DetailPane(Vertical):
    """Tabs that render one Inspection; ``show_*`` methods are the only way the app updates it."""

    COMPONENT_CLASSES = rows.STYLE_CLASSES

    def compose(self) -> ComposeResult:
        with TabbedContent(id="detail-tabs"):
            for number, tab in enumerate(TABS, start=1):
                # The number is the key that opens the tab (1-6; [ and ] step through them).
                with TabPane(f"{number} {tab.title()}", id=f"tab-{tab}"):
                    with VerticalScroll(id=f"scroll-{tab}"):
                        yield Static(Text("Select a checkpoint.", style="dim"), id=f"body-{tab}")

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active.removeprefix("tab-")

    def show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = f"tab-{tab}"

    def focus_body(self) -> None:
        """Focus the active tab's scroll area, so arrows and page keys scroll it (the zoomed view)."""
        self.query_one(f"#scroll-{self.active_tab}", VerticalScroll).focus()

    def step_tab(self, step: int) -> None:
        """The next (+1) or previous (-1) tab, wrapping around."""
        self.show_tab(TABS[(TABS.index(self.active_tab) + step) % len(TABS)])

    def _hide_plot(self) -> None:
        for plot in self.query("#training-plot"):
            plot.display = False

    def _plot(self):
        """The training plot, mounted under the Training summary on first use."""
        from textual_plotext import PlotextPlot

        found = self.query("#training-plot")
        if found:
            return found.first()
        plot = PlotextPlot(id="training-plot")
        self.query_one("#scroll-training", VerticalScroll).mount(plot)
        return plot

    def _set(self, tab: str, renderable: Any) -> None:
        self.query_one(f"#body-{tab}", Static).update(renderable)

    def style_of(self, component: str) -> Style:
        """The look of one of ``rows.STYLE_CLASSES``, from app.tcss."""
        return self.get_component_rich_style(component, partial=True)

    def show_message(self, text: str, style: Style | str = "dim") -> None:
        for tab in TABS:
            self._set(tab, rows.cell(text, style=style))
        self._hide_plot()

    def show_group(self, group: str, infos: list[CheckpointInfo]) -> None:
        total = sum(i.size_bytes for i in infos)
        broken = [i.path for i in infos if rows.status_of(i) == "broken"]
        pairs: list[tuple[str, Any]] = [
            ("run", group),
            ("checkpoints", len(infos)),
            ("size", f"{format_bytes(total, compact=True)} ({total:,} bytes)"),
            ("broken", _problems(broken, self.style_of)),
            ("hint", "f: fold metrics · p: prune · ↓ select a checkpoint"),
        ]
        self.show_message("Select a checkpoint of this run.")
        self._set("overview", _kv_table(pairs))

    def show_error(self, root: str, info: CheckpointInfo | None, error: str) -> None:
        self.show_message(f"Could not read this checkpoint: {error}", style=self.style_of("status--broken"))
        if info is not None:
            problems = [*info.problems, error]
            shown = CheckpointInfo(**{**info.__dict__, "problems": problems, "complete": False})
            self._set("overview", overview_renderable(root, shown, self.style_of))

    def show_inspection(self, root: str, inspection: Inspection) -> None:
        info = inspection.info
        self._set("overview", overview_renderable(root, info, self.style_of, inspection.manifest))
        self._set(
            "config",
            _kv_table(sorted(flatten(inspection.config)[0].items()))
            if inspection.config
            else Text("No config.json.", style="dim"),
        )
        self._set(
            "tokenizer",
            _kv_table(sorted(flatten(inspection.tokenizer)[0].items()))
            if inspection.tokenizer
            else Text("No tokenizer files.", style="dim"),
        )
        self._set("weights", weights_renderable(inspection.weights, self.style_of))
        self._set("files", files_renderable(inspection.files))
        self._show_training(inspection.trainer_state)

    def _show_training(self, state: dict | None) -> None:
        series = training_series(state)
        if not state:
            self._set("training", Text("No trainer_state.json.", style="dim"))
            self._hide_plot()
            return
        scalars = [(k, v) for k, v in state.items() if k != "log_history" and not isinstance(v, (list, dict))]
        last = {name: ys[-1] for name, (_, ys) in series.items()}
        summary = _kv_table(scalars + [(f"last {k}", f"{v:.4g}") for k, v in sorted(last.items())])
        self._set("training", summary)
        if not series:
            self._hide_plot()
            return
        plot = self._plot()
        plot.display = True
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        for name, (xs, ys) in sorted(series.items()):
            plt.plot(xs, ys, label=safe_text(name), marker="braille")
        plt.title("loss and eval metrics by step")
        plt.xlabel("step")
        plot.refresh()
