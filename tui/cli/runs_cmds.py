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

    p = sub.add_parser(
        "ensemble",
        help="OOF metric of fold models chosen across runs; -o writes the spec bin/predict.py --ensemble uses",
        description="The out-of-fold metric of an ensemble of fold models chosen across runs (probabilities "
        "averaged over the rows present in every chosen run), and with -o its spec (docs/FORMAT.md, "
        '"Ensemble spec") for `bin/predict.py --ensemble FILE`.',
    )
    p.add_argument("root", metavar="ROOT")
    p.add_argument(
        "members", nargs="+", metavar="RUN[:FOLDS][=WEIGHT]",
        help="a run folder relative to ROOT; FOLDS e.g. 0,2 (default: every fold with OOF predictions); "
        "WEIGHT each of its fold models' weight (default 1; weights are normalised)",
    )  # fmt: skip
    p.add_argument("-o", "--output", metavar="FILE", help="write the ensemble spec here")
    p.add_argument("--metric", metavar="NAME", help="metric named in the spec (default: the runs')")
    p.add_argument("--json", action="store_true", help="print the spec (or the OOF metrics) as JSON")
    p.set_defaults(handler=cmd_ensemble)


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


def parse_member(root: str, text: str):
    """``RUN[:FOLDS][=WEIGHT]`` -> Members; a usage error (one line) when it does not parse."""
    from pathlib import Path

    from tui.cli import UsageError
    from tui.core.ensemble import Member
    from tui.core.metrics import MetricsError, fold_files

    spec, _, weight_text = text.partition("=")
    run_text, _, folds_text = spec.partition(":")
    run = Path(root) / run_text
    try:
        weight = float(weight_text) if weight_text else 1.0
        folds = [int(f) for f in folds_text.split(",")] if folds_text else None
    except ValueError:
        raise UsageError(f"{safe_text(text)}: not RUN[:FOLDS][=WEIGHT] (e.g. lr3e-5:0,1=2)") from None
    if not run.is_dir():
        raise UsageError(f"{safe_text(run)}: no such run folder")
    if folds is None:
        try:
            folds = list(fold_files(run))
        except MetricsError as e:
            raise UsageError(safe_text(e)) from None
        if not folds:
            raise UsageError(f"{safe_text(run)}: no valid_df_fold_<k>.csv files")
    return [Member(run, k, weight) for k in folds]


def cmd_ensemble(args) -> int:
    from tui.cli import UsageError
    from tui.core.ensemble import EnsembleError, oof_metrics, write_spec
    from tui.core.runs import default_metric

    need_folder(args.root)
    members = [m for text in args.members for m in parse_member(args.root, text)]
    metric = args.metric or default_metric(sorted({m.run for m in members}))
    try:
        result = (
            write_spec(members, args.output, metric=metric) if args.output else {"oof": oof_metrics(members)}
        )
    except EnsembleError as e:
        raise UsageError(safe_text(e)) from None
    if args.json:
        print_json(result)
        return 0
    oof = result["oof"]
    scores = ", ".join(
        f"{k} {oof[k]:.4f}" for k in ("accuracy", "f1_macro", "log_loss") if oof.get(k) is not None
    )
    print(
        f"ensemble of {len(members)} fold models from {oof['runs']} runs: OOF over {oof['n']} rows: {scores}"
    )
    if args.output:
        print(
            f"wrote {safe_text(args.output)}; predict with: python bin/predict.py --ensemble {safe_text(args.output)} INPUT.csv"
        )
    return 0
