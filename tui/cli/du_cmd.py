"""``ckpt-tui du ROOT [--json]``: bytes per run and per kind (weights, optimizer states, other, trash) and
the free space of ROOT's filesystem (``tui.core.du``)."""

from __future__ import annotations

import os

from tui.cli.output import cell, console, print_json, warn
from tui.core.text import format_bytes, safe_text


def register(sub) -> None:
    p = sub.add_parser(
        "du",
        help="disk usage under ROOT: bytes per run and kind (weights, optimizer states, trash), free space",
    )
    p.add_argument("root", metavar="ROOT")
    p.add_argument("--json", action="store_true", help="print one JSON object (docs/FORMAT.md, JSON CLI)")
    p.set_defaults(handler=cmd_du)


def cmd_du(args) -> int:
    from tui.cli import UsageError
    from tui.core.du import KINDS, disk_report

    if not os.path.isdir(args.root):
        raise UsageError(f"{safe_text(args.root)}: no such folder")
    report = disk_report(args.root)
    if args.json:
        print_json(report.to_json())
        return 0
    for problem in report.problems:
        warn(problem)
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for name in ("run", *KINDS, "total"):
        table.add_column(name, justify="left" if name == "run" else "right")
    for run in report.runs:
        table.add_row(cell(run.run), *(cell(format_bytes(run.bytes[k])) for k in KINDS), cell(format_bytes(run.total)))
    totals = report.totals()
    table.add_row(
        cell("all runs", "bold"), *(cell(format_bytes(totals[k]), "bold") for k in KINDS),
        cell(format_bytes(totals["total"] - totals["trash"]), "bold"),
    )  # fmt: skip
    out = console()
    out.print(table)
    out.print(cell(f"trash: {format_bytes(report.trash_bytes)}"))
    free = report.free
    if free is not None:
        line = (
            f"free: {format_bytes(free.free_bytes)} of {format_bytes(free.total_bytes)} "
            f"({free.free_fraction:.0%}) on {free.mount}"
        )
        out.print(cell(line + (" — low" if free.low else ""), "bold red" if free.low else ""))
    return 0
