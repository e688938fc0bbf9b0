"""`ckpt-tui ROOT [options]`: open the Textual app on ROOT."""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from tui.cli import _Parser, add_cache_option

    parser = _Parser(
        prog="ckpt-tui", description="Browse, inspect, prune and promote the checkpoints under ROOT."
    )
    parser.add_argument("root", metavar="ROOT", help="folder holding runs / checkpoints")
    parser.add_argument(
        "--poll",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often to look for new checkpoints (0: never)",
    )
    parser.add_argument(
        "--keep", type=int, default=2, metavar="K", help="prune keeps the top K per run/fold (default 2)"
    )
    parser.add_argument(
        "--metric", default=None, metavar="NAME", help="metric prune ranks by (default: the run's)"
    )
    add_cache_option(parser)
    return parser


def run_app(argv: list[str], commands: set[str] = frozenset()) -> int:
    from tui.cli import UsageError

    args = build_parser().parse_args(argv)
    root = Path(args.root)
    if not root.exists():
        close = difflib.get_close_matches(args.root, sorted(commands), n=1)
        hint = f"; did you mean the command `{close[0]}`?" if close else ""
        raise UsageError(
            f"{args.root}: no such folder (ROOT must be a folder of runs or checkpoints){hint}"
        )
    if not root.is_dir():
        raise UsageError(
            f"{args.root}: not a folder (to inspect one file use `ckpt-tui inspect {args.root}`)"
        )
    if args.poll < 0:
        raise UsageError(f"--poll must be 0 or more seconds, got {args.poll}")
    if args.keep < 0:
        raise UsageError(f"--keep must be 0 or more, got {args.keep}")

    from tui.app.app import make_app
    from tui.core import cache

    if args.no_cache:
        cache.configure(enabled=False)

    make_app(
        root,
        poll_interval=args.poll,
        prune_keep=args.keep,
        prune_metric=args.metric,
        convert_loader=load_converter,
    ).run()
    return 0


def load_converter():
    """tui.convert for the app's promote: imported in its worker when a promote runs (the app never
    imports torch-backed code itself, and its start never waits for it)."""
    from tui import convert

    return convert
