"""How ``ckpt-tui ls`` prints for people and for pipes.

- a terminal: a table that fits its width (``COLUMNS``, else the terminal's size). Optional columns are
  dropped, least useful first, before the path is wrapped; the path is never cut. Colours unless
  ``NO_COLOR`` is set (https://no-color.org).
- not a terminal: tab-separated rows under one header line (``TSV_COLUMNS``, kept in output.py for
  ``ls --help``), numbers unformatted.
- ``-q``: paths only, one per line, joined to ROOT as given so that they name the checkpoints from the
  current directory (``ckpt-tui rm $(ckpt-tui ls ROOT -q --filter broken)``).

Every name and problem read off disk goes through ``safe_text``: a tab or newline in a name is printed as
``\\x09`` / ``\\x0a`` and never splits a row (``--json`` gives exact names).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from tui.cli.output import TSV_COLUMNS, cell, console
from tui.core.model import CheckpointInfo, progress_text
from tui.core.text import format_bytes, format_count, plural, safe_text

GAP = 2  # spaces between table columns
MIN_PATH = 16  # the path column is never narrower than this (it wraps instead of being cut)


def quiet_paths(infos: list[CheckpointInfo], root: str) -> str:
    """The paths as the current directory reaches them, one per line."""
    lines = [safe_text(root if i.path == "." else os.path.join(root, i.path)) for i in infos]
    return "".join(line + "\n" for line in lines)


def status_text(info: CheckpointInfo) -> str:
    if info.unsupported:
        base = "unread"
    elif info.complete:
        base = "ok"
    else:
        base = plural(len(info.problems), "problem")
    marks = [m for m, on in (("best", info.best), ("promoted", info.promoted), ("writing", info.in_progress)) if on]
    return " ".join([base, *marks])


def _metric(info: CheckpointInfo) -> str:
    return f"{info.metric.name or '?'}={info.metric.value:.4g}" if info.metric else ""


def _num(value) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def tsv(infos: list[CheckpointInfo]) -> str:
    """Header line plus one tab-separated row per checkpoint; an unknown value is an empty field."""
    rows = ["\t".join(TSV_COLUMNS)]
    for i in infos:
        fields = [
            i.path, i.kind, status_text(i), _num(i.size_bytes), _num(i.allocated_bytes), _num(i.parameters),
            ",".join(i.dtypes or ()), _num(i.step), _num(i.epoch), _num(i.fold), "yes" if i.best else "",
            (i.metric.name or "") if i.metric else "", _num(i.metric.value) if i.metric else "",
        ]  # fmt: skip
        rows.append("\t".join(safe_text(f) for f in fields))
    return "".join(r + "\n" for r in rows)


@dataclass
class Column:
    name: str
    cells: list[str]
    right: bool = False
    drop_rank: int = 0  # 0: always shown; higher numbers are dropped first when the terminal is narrow

    @property
    def width(self) -> int:
        return max([len(self.name), *(len(c) for c in self.cells)])


def _on_disk(info: CheckpointInfo) -> str:
    """Allocated bytes where deleting frees less than the size says (sparse or compressed files)."""
    if info.allocated_bytes is None or info.allocated_bytes >= info.size_bytes:
        return ""
    return format_bytes(info.allocated_bytes)


def columns(infos: list[CheckpointInfo]) -> list[Column]:
    cols = [
        Column("path", [safe_text(i.path) for i in infos]),
        Column("kind", [i.kind for i in infos]),
        Column("status", [status_text(i) for i in infos]),
        Column("size", [format_bytes(i.size_bytes) for i in infos], right=True, drop_rank=2),
        Column("on disk", [_on_disk(i) for i in infos], right=True, drop_rank=3),
        Column("step", [progress_text(i) or "-" for i in infos], right=True, drop_rank=4),
        Column("metric", [safe_text(_metric(i)) or "-" for i in infos], drop_rank=5),
        Column("params", [format_count(i.parameters) for i in infos], right=True, drop_rank=6),
        Column("fold", ["-" if i.fold is None else str(i.fold) for i in infos], right=True, drop_rank=7),
        Column("dtypes", [safe_text(",".join(i.dtypes)) if i.dtypes else "-" for i in infos], drop_rank=8),
        Column("epoch", ["-" if i.epoch is None else f"{i.epoch:g}" for i in infos], right=True, drop_rank=9),
    ]
    return [c for c in cols if c.name != "on disk" or any(c.cells)]


def fit(cols: list[Column], width: int) -> list[Column]:
    """The columns shown in ``width``: optional ones dropped (highest rank first) until the rest fit with
    the path at full length, or at ``MIN_PATH`` (then it wraps) when nothing more can go."""
    shown = list(cols)

    def total(path_width: int) -> int:
        return path_width + sum(c.width for c in shown[1:]) + GAP * (len(shown) - 1)

    path_width = shown[0].width
    while total(path_width) > width:
        optional = [c for c in shown if c.drop_rank]
        if not optional:
            break
        shown.remove(max(optional, key=lambda c: c.drop_rank))
    return shown


def terminal_width() -> int:
    return shutil.get_terminal_size((100, 24)).columns  # COLUMNS first, then the terminal


def print_table(infos: list[CheckpointInfo], total: int) -> None:
    from rich.table import Table
    from rich.text import Text

    width = terminal_width()
    every = columns(infos)
    shown = fit(every, width)
    title = f"{total} checkpoints" if total == len(infos) else f"{len(infos)} of {total} checkpoints"
    table = Table(box=None, padding=(0, GAP // 2), pad_edge=False, show_edge=False, header_style="bold")
    for c in shown:
        is_path = c.name == "path"
        table.add_column(
            c.name,
            justify="right" if c.right else "left",
            no_wrap=not is_path,
            overflow="fold" if is_path else "ellipsis",
            min_width=min(c.width, MIN_PATH) if is_path else c.width,
        )
    styles = {"status": lambda t: "green" if t.startswith("ok") else "yellow" if t.startswith("unread") else "red"}
    for row in range(len(infos)):
        cells = []
        for c in shown:
            text = c.cells[row]
            style = styles[c.name](text) if c.name in styles else ""
            cells.append(Text(text, style=style))  # already made safe; Text is never parsed as markup
        table.add_row(*cells)
    out = console(width)
    out.print(table)
    dropped = [c.name for c in every if all(c is not s for s in shown)]
    note = f"  ({', '.join(dropped)} left out at {width} columns; --json has all)" if dropped and infos else ""
    out.print(Text(title + note, style="dim"))
    for i in infos:
        for p in i.problems:
            out.print(Text.assemble(("! ", "red"), cell(i.path), ": ", cell(p)))
