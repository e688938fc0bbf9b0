"""Pure presentation helpers for the browser: cell text, status badges, sort keys, filtering.

No widgets here, so they are unit-tested without running the app. Text read off disk reaches the screen
only through ``cell`` / ``tui.core.text.safe_text``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.style import Style
from rich.text import Text

from tui.core.model import CheckpointInfo, folder_of_run, progress_key, progress_text, run_of
from tui.core.text import format_count, lower_is_better, safe_text

if TYPE_CHECKING:  # the diff module loads every reader: not before the first paint
    from tui.core.diff import ConfigChange, TensorChange

SORTS = ("name", "step", "metric", "size")

KIND_SHORT = {
    "hf-checkpoint": "hf-ckpt",
    "hf-model": "hf-model",
    "peft-adapter": "peft",
    "deepspeed": "deepspeed",
    "accelerate-state": "accel",
    "lightning": "lightning",
    "torch-pickle": "pickle",
    "safetensors-file": "st-file",
    "mindspore": "mindspore",
    "torch-dcp": "dcp",
}


def cell(value: Any, style: str = "", justify: Any = None) -> Text:
    """A renderable for text read off disk: terminal-safe, never parsed as markup."""
    return Text(safe_text(value), style=style, justify=justify)


def status_of(info: CheckpointInfo) -> str:
    """One badge word, most urgent first: what the user must know before acting on the row."""
    if info.in_progress:
        return "in progress"
    if info.pickle_scan == "unsafe":
        return "unsafe"  # a pickle in it would run code on torch.load
    if not info.complete or info.problems:
        return "broken"
    if info.unsupported:
        return "unsupported"
    if info.promoted:
        return "promoted"
    if info.best:
        return "best"
    return "complete"


# status -> (badge text, component class that styles it). The looks live in app.tcss, on theme colours.
BADGE = {
    "unsafe": ("⚠ unsafe", "status--broken"),
    "broken": ("✖ broken", "status--broken"),
    "in progress": ("… writing", "status--writing"),
    "unsupported": ("? unread", "status--unsupported"),
    "promoted": ("⇪ promoted", "status--promoted"),
    "best": ("★ best", "status--best"),
    "complete": ("✔ ok", "status--ok"),
}
# The component classes of the widgets that draw checkpoints (the browser, the detail pane).
STYLE_CLASSES = {
    *(css for _, css in BADGE.values()),
    "status--none",  # "no problems"
    "status--live",  # a run a trainer writes now
    "row--marked",
    "row--group",
    "row--dim",
}

StyleOf = Callable[[str], Style]  # a widget's get_component_rich_style


def badge(info: CheckpointInfo, style_of: StyleOf) -> Text:
    label, css = BADGE[status_of(info)]
    return Text(label, style=style_of(css))


def metric_value(info: CheckpointInfo) -> float | None:
    return float(info.metric.value) if info.metric is not None else None


def metric_text(info: CheckpointInfo) -> str:
    value = metric_value(info)
    return "" if value is None else f"{value:.4g}"


def step_text(info: CheckpointInfo) -> str:
    return progress_text(info)


def params_text(info: CheckpointInfo) -> str:
    """Parameters shortened for a narrow column ("26.2B"); empty when unknown."""
    return format_count(info.parameters) if info.parameters is not None else ""


def name_in_run(info: CheckpointInfo) -> str:
    group = folder_of_run(run_of(info))
    if group != "." and info.path.startswith(group + "/"):
        return info.path[len(group) + 1 :]
    return info.path


_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[Any, ...]:
    """Order names as people count: ``checkpoint-200`` before ``checkpoint-1000``, ``fold_2`` before
    ``fold_10``. Text parts compare case-folded, digit runs as numbers (even positions are text, odd
    positions numbers, so two keys always compare)."""
    parts = _DIGITS.split(text)
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts))


@functools.total_ordering
class Descending:
    """Wraps a sort key so that it orders backwards inside a tuple key (reverse sort keeps a run's
    header above its rows, which ``sorted(reverse=True)`` of the whole table would not)."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Descending) and self.key == other.key

    def __lt__(self, other: Descending) -> bool:
        return other.key < self.key

    def __hash__(self) -> int:
        return hash(self.key)


def sort_key(sort: str, reverse: bool = False) -> Callable[[CheckpointInfo], Any]:
    """Key for rows inside one run: grouped by fold, then by ``sort``; best/largest first where it helps.
    ``reverse`` turns the order around (the fold grouping too)."""

    def fold(info: CheckpointInfo) -> int:
        return info.fold if info.fold is not None else -1

    def by_name(info: CheckpointInfo) -> Any:
        return (fold(info), natural_key(info.path))

    def by_step(info: CheckpointInfo) -> Any:
        known, *where = progress_key(info)
        return (fold(info), not known, *where, natural_key(info.path))

    def by_metric(info: CheckpointInfo) -> Any:
        value = metric_value(info)
        if value is None:
            return (1, 0.0, natural_key(info.path))
        name = info.metric.name if info.metric else None
        return (0, value if lower_is_better(name) else -value, natural_key(info.path))

    def by_size(info: CheckpointInfo) -> Any:
        return (-info.size_bytes, natural_key(info.path))

    key = {"name": by_name, "step": by_step, "metric": by_metric, "size": by_size}[sort]
    return (lambda info: Descending(key(info))) if reverse else key


def group_key(sort: str, reverse: bool, group: str, size_bytes: int) -> Any:
    """Order of the runs: by total size (largest first) when sorting by size, else by name."""
    key = (-size_bytes, natural_key(group)) if sort == "size" else natural_key(group)
    return Descending(key) if reverse else key


def matches(info: CheckpointInfo, needle: str) -> bool:
    """Type-to-filter: every whitespace-separated word must appear in the path, kind or status."""
    if not needle.strip():
        return True
    haystack = f"{info.path} {info.kind} {status_of(info)}".lower()
    return all(word in haystack for word in needle.lower().split())


_MISSING = "∅"


def config_rows(changes: list[ConfigChange]) -> list[tuple[str, Any, Any]]:
    """(key, A value, B value) of the core's config changes; a key one side lacks shows ∅ there."""
    return [
        (c.key, _MISSING if c.only_in == "b" else c.a, _MISSING if c.only_in == "a" else c.b) for c in changes
    ]


def tensor_rows(changes: list[TensorChange]) -> list[tuple[str, str, str]]:
    """(tensor name, A 'dtype shape', B 'dtype shape') of the core's tensor changes; absent shows ∅."""

    def show(entry: tuple[str, tuple[int, ...]] | None) -> str:
        return _MISSING if entry is None else f"{entry[0]} {list(entry[1])}"

    return [(c.name, show(c.a), show(c.b)) for c in changes]
