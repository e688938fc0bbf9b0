"""Pure presentation helpers for the browser: cell text, status badges, sort keys, filtering.

No widgets here, so they are unit-tested without running the app. Text read off disk reaches the screen
only through ``cell`` / ``tui.core.text.safe_text``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.style import Style
from rich.text import Text

from tui.core.model import CheckpointInfo, run_of
from tui.core.text import lower_is_better, safe_text

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
}


def cell(value: Any, style: str = "", justify: Any = None) -> Text:
    """A renderable for text read off disk: terminal-safe, never parsed as markup."""
    return Text(safe_text(value), style=style, justify=justify)


def status_of(info: CheckpointInfo) -> str:
    """One badge word, most urgent first: what the user must know before acting on the row."""
    if info.in_progress:
        return "in progress"
    if not info.complete or info.problems:
        return "broken"
    if info.promoted:
        return "promoted"
    if info.best:
        return "best"
    return "complete"


# status -> (badge text, component class that styles it). The looks live in app.tcss, on theme colours.
BADGE = {
    "broken": ("✖ broken", "status--broken"),
    "in progress": ("… writing", "status--writing"),
    "promoted": ("⇪ promoted", "status--promoted"),
    "best": ("★ best", "status--best"),
    "complete": ("✔ ok", "status--ok"),
}
# The component classes of the widgets that draw checkpoints (the browser, the detail pane).
STYLE_CLASSES = {
    *(css for _, css in BADGE.values()),
    "status--none",  # "no problems"
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
    if info.step is not None:
        return str(info.step)
    if info.epoch is not None:
        return f"e{info.epoch:g}"
    return ""


def name_in_run(info: CheckpointInfo) -> str:
    group = run_of(info)
    if group != "." and info.path.startswith(group + "/"):
        return info.path[len(group) + 1 :]
    return info.path


def sort_key(sort: str) -> Callable[[CheckpointInfo], Any]:
    """Key for rows inside one run: grouped by fold, then by ``sort``; best/largest first where it helps."""

    def by_name(info: CheckpointInfo) -> Any:
        return (info.fold if info.fold is not None else -1, info.path)

    def by_step(info: CheckpointInfo) -> Any:
        return (info.fold if info.fold is not None else -1, info.step is None, info.step or 0, info.path)

    def by_metric(info: CheckpointInfo) -> Any:
        value = metric_value(info)
        if value is None:
            return (1, 0.0, info.path)
        name = info.metric.name if info.metric else None
        return (0, value if lower_is_better(name) else -value, info.path)

    def by_size(info: CheckpointInfo) -> Any:
        return (-info.size_bytes, info.path)

    return {"name": by_name, "step": by_step, "metric": by_metric, "size": by_size}[sort]


def matches(info: CheckpointInfo, needle: str) -> bool:
    """Type-to-filter: every whitespace-separated word must appear in the path, kind or status."""
    if not needle.strip():
        return True
    haystack = f"{info.path} {info.kind} {status_of(info)}".lower()
    return all(word in haystack for word in needle.lower().split())


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys, for a key-by-key config diff."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: obj} if prefix else {"": obj}


_MISSING = "∅"


def config_diff(left: dict | None, right: dict | None) -> list[tuple[str, Any, Any]]:
    """(key, left value, right value) for every dotted key whose values differ; absent shows as ∅."""
    a, b = flatten(left or {}), flatten(right or {})
    rows = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        if va != vb:
            rows.append((key, va, vb))
    return rows


def tensor_diff(
    left: dict[str, tuple[str, tuple[int, ...]]], right: dict[str, tuple[str, tuple[int, ...]]]
) -> list[tuple[str, str, str]]:
    """(tensor name, left 'dtype shape', right 'dtype shape') for tensors missing on one side or differing."""

    def show(entry: tuple[str, tuple[int, ...]] | None) -> str:
        if entry is None:
            return _MISSING
        dtype, shape = entry
        return f"{dtype} {list(shape)}"

    rows = []
    for name in sorted(set(left) | set(right)):
        ea, eb = left.get(name), right.get(name)
        if ea is None or eb is None or ea[0] != eb[0] or tuple(ea[1]) != tuple(eb[1]):
            rows.append((name, show(ea), show(eb)))
    return rows
