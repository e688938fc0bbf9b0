"""``ckpt-tui runs ROOT``: the leaderboard of every K-fold run under ROOT (``tui.core.runs``)."""

from __future__ import annotations

import os

from tui.cli.output import cell, console, print_json, warn
from tui.core.text import safe_text


def register(sub) -> None:
    p = sub.add_parser(
        "runs",
        help="every K-fold run under ROOT, ranked by out-of-fold metric",
        description="Every K-fold run under ROOT (folders with run.json, cv.json or valid_df_fold_<k>.csv), "
        "ranked by out-of-fold metric, with mean ± std over folds, folds done/total, model, the config keys "
        "that differ between runs, size on disk and status (running / complete / failed / interrupted).",
    )
    p.add_argument("root", metavar="ROOT")
    p.add_argument("--json", action="store_true", help="print one JSON object (docs/FORMAT.md, JSON CLI)")
    p.add_argument("--metric", metavar="NAME", help="rank by this metric (default: the one most runs use)")
    p.set_defaults(handler=cmd_runs)


def need_folder(path: str) -> None:
    from tui.cli import UsageError

    if not os.path.isdir(path):
        what = "no such folder" if not os.path.exists(path) else "not a folder"
        raise UsageError(f"{safe_text(path)}: {what} (ROOT must be a folder of runs)")


def cmd_runs(args) -> int:
    from tui.core.runs import leaderboard, table

    need_folder(args.root)
    board = leaderboard(args.root, args.metric)
    for run in board.runs:
        for problem in run.problems:
            warn(f"{run.path}: {problem}")
    if args.json:
        print_json(board.to_json())
        return 0
    if not board.runs:
        print(f"no K-fold runs under {safe_text(args.root)}")
        return 0
    from rich.table import Table

    headers, rows = table(board)
    direction = "lower" if board.lower_is_better else "higher"
    out = Table(title=f"runs ranked by out-of-fold {safe_text(board.metric)} ({direction} is better)")
    for name in headers:
        out.add_column(safe_text(name), no_wrap=name == "run")
    for cells in rows:
        out.add_row(*(cell(c) for c in cells))
    console().print(out)
    return 0
