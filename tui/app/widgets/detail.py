"""Detail tabs for the highlighted checkpoint: Overview, Config, Tokenizer, Weights, Training, Files.

It renders an ``Inspection`` as given; every field may be None (unknown) and is shown as such.
The Config tab shows the summary, then every key of the config file as written. The Training tab's plot
lives in ``tui.app.widgets.training``.
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
from tui.app.widgets import training
from tui.core.mindspore_ckpt.runs import name_role, run_note
from tui.core.model import CheckpointInfo, Inspection
from tui.core.resume_layout import resumes_on
from tui.core.text import format_bytes, safe_text

if TYPE_CHECKING:
    from tui.core.dcp import DcpReport
    from tui.core.mindspore_ckpt import MindSporeReport
    from tui.core.pickle_scan import PickleReport
    from tui.core.weights import WeightsSummary

TABS = ("overview", "config", "tokenizer", "weights", "training", "files")
MAX_CONFIG_KEYS = 5_000  # keys of a config file drawn in the Config tab (a hostile one may hold millions)


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
    root: str,
    info: CheckpointInfo,
    style_of: rows.StyleOf,
    manifest: dict | None = None,
    resume: dict | None = None,
) -> Table:
    role = name_role(info.path.rpartition("/")[2]) if info.kind == "mindspore" else None
    # Status and problems first: in 80x24 they are what must be seen without scrolling.
    pairs: list[tuple[str, Any]] = [
        ("path", info.path),
        ("status", rows.badge(info, style_of)),
        ("problems", _problems(info.problems, style_of)),
        ("kind", f"{info.kind} ({role} model)" if role else info.kind),
        ("size", f"{format_bytes(info.size_bytes, compact=True)} ({info.size_bytes:,} bytes)"),
        ("metric", f"{info.metric.name} = {info.metric.value}" if info.metric else None),
        ("step", info.step),
        ("epoch", info.epoch),
        *([("step in epoch", info.epoch_step)] if info.epoch_step is not None else []),
        *(
            [("unsupported", Text(safe_text(info.unsupported), style=style_of("status--unsupported")))]
            if info.unsupported
            else []
        ),
        ("fold", info.fold),
        ("run", info.run),
        ("absolute", f"{root.rstrip('/')}/{info.path}"),
        ("parameters", f"{info.parameters:,}" if info.parameters is not None else None),
        ("tensors", info.tensors),
        ("dtypes", ", ".join(f"{k}: {v:,}" for k, v in info.dtypes.items()) if info.dtypes else None),
    ]
    if manifest:
        pairs.append(("manifest", f"{manifest.get('kind')} · {len(manifest.get('files') or {})} files"))
    if where := resumes_on(resume):  # a resumable step checkpoint: the process layouts it loads on
        pairs.append(("resumes on", where))
    return _kv_table(pairs)


def weights_renderable(
    weights: WeightsSummary | PickleReport | MindSporeReport | DcpReport | None, style_of: rows.StyleOf
) -> Any:
    if weights is None:
        return Text("No weights found in this checkpoint.", style="dim")
    parameters = f"{weights.parameters:,}" if weights.parameters is not None else None
    if weights.source == "pickle":
        head = [
            ("tensors", weights.tensors),
            ("parameters", parameters),
            ("format", weights.format),
            ("pickle scan", getattr(weights, "verdict", None)),
        ]
    elif weights.source in ("mindspore", "dcp"):
        # Network weights; the optimizer state these formats keep beside them is counted apart.
        head = [
            ("network tensors", weights.tensors),
            ("parameters", parameters),
            ("bytes", format_bytes(weights.bytes, compact=True)),
            ("optimizer", f"{weights.optimizer_tensors} tensors, {weights.optimizer_parameters:,} values"),
            ("format", weights.format),
        ]
        if weights.source == "dcp":
            head.append(("chunks", f"{weights.chunks} in {len(weights.files)} .distcp files"))
        elif weights.scalars:
            head.append(("scalars", ", ".join(f"{k}={v:.6g}" for k, v in weights.scalars.items())))
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
    if weights.source == "dcp" and weights.files:
        table = Table(title=".distcp files", title_justify="left")
        for col in ("file", "records", "size", "needed"):
            table.add_column(col, justify="left" if col == "file" else "right", overflow="fold")
        for f in weights.files:
            size, needed = (
                format_bytes(f["size_bytes"], compact=True),
                format_bytes(f["needed_bytes"], compact=True),
            )
            table.add_row(rows.cell(f["path"]), _short(f["items"]), size, needed)
        parts.append(table)
    elif weights.source == "safetensors" and weights.files:
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


def _mindspore_note(infos: list[CheckpointInfo], paths: list[str]) -> str | None:
    """What a MindSpore run's remaining files say (a renamed prefix, keep_checkpoint_max)."""
    names = [i.path.rpartition("/")[2] for i in infos if i.kind == "mindspore"]
    if not names:
        return None
    folder = infos[0].path.rpartition("/")[0]
    return run_note(names, [p.rpartition("/")[2] for p in paths if p.rpartition("/")[0] == folder])


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


class DetailPane(Vertical):
    """Tabs that render one Inspection; ``show_*`` methods are the only way the app updates it."""

    COMPONENT_CLASSES = rows.STYLE_CLASSES

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._series: training.Series = {}  # the shown checkpoint's training log
        self._view = "all"  # which series the plot draws (``v``)
        self._smooth = False  # ``V``

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
        for widget in self.query("#training-plot, #training-legend"):
            widget.display = False

    def _plot(self):
        """The training plot and its legend, mounted above the Training summary on first use."""
        from textual_plotext import PlotextPlot

        found = self.query("#training-plot")
        if found:
            return found.first()
        plot = PlotextPlot(id="training-plot")
        scroll = self.query_one("#scroll-training", VerticalScroll)
        scroll.mount(Static(id="training-legend"), plot, before=0)
        return plot

    def _set(self, tab: str, renderable: Any) -> None:
        self.query_one(f"#body-{tab}", Static).update(renderable)

    def style_of(self, component: str) -> Style:
        """The look of one of ``rows.STYLE_CLASSES``, from app.tcss."""
        return self.get_component_rich_style(component, partial=True)

    def show_message(self, text: str, style: Style | str = "dim") -> None:
        for tab in TABS:
            self._set(tab, rows.cell(text, style=style))
        self._series = {}
        self._hide_plot()

    def show_group(
        self, group: str, infos: list[CheckpointInfo], live: str | None = None, paths: list[str] | None = None
    ) -> None:
        """A run's header row: its size and broken checkpoints; ``live``: who holds its .lock now; ``paths``:
        every checkpoint path known, for what a MindSpore run's files say beside their folder."""
        total = sum(i.size_bytes for i in infos)
        broken = [i.path for i in infos if rows.status_of(i) == "broken"]
        pairs: list[tuple[str, Any]] = [
            ("run", group),
            *([("live", Text(f"● {safe_text(live)}", style=self.style_of("status--live")))] if live else []),
            ("checkpoints", len(infos)),
            ("size", f"{format_bytes(total, compact=True)} ({total:,} bytes)"),
            ("broken", _problems(broken, self.style_of)),
        ]
        if note := _mindspore_note(infos, paths or []):
            pairs.append(("note", note))
        pairs.append(("hint", "f: fold metrics · p: prune · ↓ select a checkpoint"))
        self.show_message("Select a checkpoint of this run.")
        self._set("overview", _kv_table(pairs))

    def show_error(self, root: str, info: CheckpointInfo | None, error: str) -> None:
        self.show_message(f"Could not read this checkpoint: {error}", style=self.style_of("status--broken"))
        if info is not None:
            problems = [*info.problems, error]
            shown = CheckpointInfo(**{**info.__dict__, "problems": problems, "complete": False})
            self._set("overview", overview_renderable(root, shown, self.style_of))

    def show_inspection(self, root: str, inspection: Inspection) -> None:
        from tui.core.diff import flatten  # loads every reader: imported once there is an inspection

        info = inspection.info
        self._set(
            "overview", overview_renderable(root, info, self.style_of, inspection.manifest, inspection.resume)
        )
        self._set("config", config_renderable(inspection.config, inspection.config_file))
        self._set(
            "tokenizer",
            _kv_table(sorted(flatten(inspection.tokenizer)[0].items()))
            if inspection.tokenizer
            else Text("No tokenizer files.", style="dim"),
        )
        self._set("weights", weights_renderable(inspection.weights, self.style_of))
        self._set("files", files_renderable(inspection.files))
        self._show_training(inspection.trainer_state)

    # --- training ----------------------------------------------------------------------------------------

    def cycle_series(self) -> str | None:
        """``v``: the next set of series to plot; None when no training log is shown."""
        views = training.views_of(self._series)
        if not self._series:
            return None
        self._view = views[(views.index(self._view) + 1) % len(views)] if self._view in views else views[0]
        self._redraw()
        return self._view

    def toggle_smoothing(self) -> bool | None:
        """``V``: smooth dense series or not; None when no training log is shown."""
        if not self._series:
            return None
        self._smooth = not self._smooth
        self._redraw()
        return self._smooth

    def _show_training(self, state: dict | None) -> None:
        self._series = training.training_series(state)
        if not state:
            self._set("training", Text("No trainer_state.json.", style="dim"))
            self._hide_plot()
            return
        scalars = [(k, v) for k, v in state.items() if k != "log_history" and not isinstance(v, (list, dict))]
        last = {name: ys[-1] for name, (_, ys) in self._series.items()}
        summary = _kv_table(scalars + [(f"last {k}", f"{v:.4g}") for k, v in sorted(last.items())])
        self._set("training", summary)
        if self._view not in training.views_of(self._series):
            self._view = "all"
        self._redraw()

    def _redraw(self) -> None:
        if not self._series:
            self._hide_plot()
            return
        plot = self._plot()
        drawn = training.lines(self._series, self._view, self._smooth)
        legend = self.query_one("#training-legend", Static)
        legend.update(training.legend(drawn, self._view, self._smooth))
        legend.display = plot.display = True
        training.draw(plot.plt, drawn)
        plot.refresh()


def config_renderable(summary: dict | None, whole: dict | None) -> Any:
    """The summary (model type, sizes, labels), then every key of the file as written, in file order."""
    from tui.core.diff import flatten  # loads every reader: imported once there is a config to show

    if not summary and not whole:
        return Text("No config.json.", style="dim")
    parts: list[Any] = []
    if summary:
        parts += [Text("summary", style="bold underline"), _kv_table(sorted(flatten(summary)[0].items()))]
    if whole:
        keys, complete = flatten(whole, limit=MAX_CONFIG_KEYS)
        title = f"config file ({len(keys):,}{'' if complete else '+'} keys)"
        parts += [Text(""), Text(title, style="bold underline"), _kv_table(list(keys.items()))]
        if not complete:
            parts.append(
                Text(
                    f"… cut at {MAX_CONFIG_KEYS:,} keys: `ckpt-tui inspect PATH --json` prints them all",
                    style="dim",
                )
            )
    return Group(*parts)
