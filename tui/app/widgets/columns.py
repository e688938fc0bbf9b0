"""Which browser columns fit a width, and how wide each is: recomputed on every resize.

Name, Kind and Status always show (Name is cut before either of the others goes); the optional columns
join in priority order while Name keeps a readable width, and Name takes whatever is left, so a wider
terminal shows longer names.
"""

from __future__ import annotations

from typing import NamedTuple


class Column(NamedTuple):
    key: str
    label: str
    width: int


ORDER = ("name", "kind", "step", "metric", "params", "size", "status")  # left to right
LABELS = {
    "name": "Name",
    "kind": "Kind",
    "step": "Step",
    "metric": "Metric",
    "params": "Params",
    "size": "Size",
    "status": "Status",
}
WIDTHS = {"kind": 9, "step": 6, "metric": 7, "params": 6, "size": 7, "status": 10}
REQUIRED = ("name", "kind", "status")
OPTIONAL = ("metric", "size", "step", "params")  # the first joins first and is the last to go
NAME_MIN = 8  # Name is never cut below this (the table scrolls sideways instead)
NAME_COMFORT = 24  # an optional column joins only while Name keeps at least this many cells
PADDING = 2  # DataTable's cell padding: one cell each side


def layout(width: int) -> list[Column]:
    """The columns, left to right, for a table ``width`` cells wide (scrollbar already taken off)."""
    used = sum(WIDTHS[key] + PADDING for key in REQUIRED if key != "name") + PADDING
    shown = set(REQUIRED)
    for key in OPTIONAL:
        if width - used - (WIDTHS[key] + PADDING) >= NAME_COMFORT:
            shown.add(key)
            used += WIDTHS[key] + PADDING
    name = max(NAME_MIN, width - used)
    return [Column(key, LABELS[key], name if key == "name" else WIDTHS[key]) for key in ORDER if key in shown]
