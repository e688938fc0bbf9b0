"""Read-only commands: ``ls ROOT``, ``inspect PATH``, ``metrics ROOT`` (JSON with ``--json``, rich tables
otherwise). Exit 0 whenever the command ran, problems found included; 2 with one line for usage errors,
a missing path, or metrics that cannot be computed. rich and pandas are imported inside handlers, and
so is what only the tables or ``--filter`` need: ``ls --json`` and ``inspect --json`` start fast."""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tui.cli.output import TSV_COLUMNS, cell, console, jsonable, note, print_json, warn
from tui.core.text import safe_text

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any

FLOAT_KEYS = ("accuracy", "f1_macro", "log_loss")


def register(sub) -> None:
    p = sub.add_parser(
        "ls",
        help="list every checkpoint under ROOT",
        description="List every checkpoint under ROOT. On a terminal: a table fitting its width (COLUMNS); "
        "piped: tab-separated rows under a header line (" + " ".join(TSV_COLUMNS) + "). NO_COLOR turns "
        "colours off.",
    )
    p.add_argument("root", metavar="ROOT")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print a JSON array (docs/FORMAT.md, JSON CLI)")
    out.add_argument(
        "-q", "--quiet", action="store_true", help="paths only, one per line (for `ckpt-tui rm $(...)`)"
    )
    p.add_argument(
        "--filter",
        action="append",
        metavar="EXPR",
        help="keep checkpoints matching EXPR; repeat to require all: kind=deepspeed, fold=0, step>=1000, "
        "run=NAME, size>1G (larger=1G), age>7d (older=7d), broken, complete, best, promoted, in-progress, unsafe, "
        "!best",
    )
    p.set_defaults(handler=cmd_ls)

    p = sub.add_parser("inspect", help="everything about one checkpoint")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--verify", action="store_true", help="also check manifest sha256 digests (reads every file)"
    )
    p.add_argument("--root", default=None, help="root the reported path is relative to (default: found)")
    p.set_defaults(handler=cmd_inspect)

    p = sub.add_parser("metrics", help="fold / out-of-fold metrics from valid_df_fold_<k>.csv files")
    p.add_argument("root", metavar="ROOT")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_metrics)


def _usage(message: str) -> Exception:
    from tui.cli import UsageError

    return UsageError(message)


def _need_folder(path: str, command: str) -> None:
    if not os.path.exists(path):
        raise _usage(f"{safe_text(path)}: no such folder")
    if not os.path.isdir(path):
        hint = "; use `ckpt-tui inspect PATH` for one checkpoint file" if command == "ls" else ""
        raise _usage(f"{safe_text(path)}: not a folder ({command} takes a ROOT folder{hint})")


FULL_COLLECTION_EVERY = 100  # young collections between full ones while ls scans (Python's default: 10)


@contextmanager
def _rare_full_collections() -> Iterator[None]:
    """A scan keeps all it builds until it prints (a record, cache entries and stat keys per checkpoint) and
    makes no reference cycles, so each full pass of the cycle collector walks a growing heap to free
    nothing: 5-7 passes, ~0.15 s of CPU in an ls of 10,000 checkpoints. Young objects are still
    collected as usual (a cycle a reader makes dies young)."""
    young, middle, full = gc.get_threshold()
    gc.set_threshold(young, middle, max(full, FULL_COLLECTION_EVERY))
    try:
        yield
    finally:
        gc.set_threshold(young, middle, full)


def cmd_ls(args) -> int:
    from tui.core.forked import default_processes
    from tui.core.snapshot import iter_checkpoints

    _need_folder(args.root, "ls")
    keep = _filter(args.filter)
    errors: list[str] = []
    with _rare_full_collections():
        found = list(iter_checkpoints(args.root, errors=errors, processes=default_processes()))
    infos = [i for i in found if keep(i)] if args.filter else found
    for line in errors:
        warn(line)
    if args.json:
        print_json([i.to_json() for i in infos])
        return 0
    from tui.cli import listing

    if args.quiet:
        sys.stdout.write(listing.quiet_paths(infos, args.root))
    elif sys.stdout.isatty():
        listing.print_table(infos, len(found))
    else:
        sys.stdout.write(listing.tsv(infos))
    return 0


def _filter(exprs: list[str] | None):
    if not exprs:
        return None
    from tui.cli import filters

    try:
        return filters.combine(exprs)
    except filters.FilterError as e:
        raise _usage(safe_text(e)) from None


def cmd_inspect(args) -> int:
    from tui.core.inspect import NotACheckpoint, find_root, inspect_path

    if not os.path.exists(args.path):
        raise _usage(f"{safe_text(args.path)}: no such file or folder")
    root = args.root or str(find_root(args.path))
    path = args.path
    try:
        result = inspect_path(root, path, verify_hashes=args.verify)
    except NotACheckpoint as e:
        path = _the_one_inside(root, args.path)
        if path is None:
            raise _usage(safe_text(e)) from None
        note(f"{args.path} holds one checkpoint file: {path}")
        result = inspect_path(root, path, verify_hashes=args.verify)
    if args.json:
        print_json(result.to_json())
        return 0
    _inspect_tables(result)
    return 0


MAX_ENTRIES_LOOKED_AT = 1000


def _the_one_inside(root: str, folder: str) -> str | None:
    """The one checkpoint file directly in ``folder`` (a folder holding only ``model.safetensors``, which
    the scan lists as that file), None when there are none or several (then the error stands)."""
    from tui.core.scan import describe

    if not os.path.isdir(folder):
        return None
    found = []
    try:
        with os.scandir(folder) as entries:
            for n, entry in enumerate(entries):
                if n >= MAX_ENTRIES_LOOKED_AT:
                    return None
                if entry.is_file() and describe(root, entry.path) is not None:
                    found.append(entry.path)
    except OSError:
        return None
    return found[0] if len(found) == 1 else None


def cmd_metrics(args) -> int:
    from tui.core.metrics import MetricsError, compute_metrics

    _need_folder(args.root, "metrics")
    folder = _metrics_folder(args.root)
    try:
        result = compute_metrics(folder)
    except MetricsError as e:
        raise _usage(safe_text(e)) from None
    for k, fold in result["folds"].items():
        if fold.get("error"):
            warn(f"fold {k} left out: {fold['error']}")
    if args.json:
        print_json(result)
        return 0
    _metrics_table(result)
    return 0


def _metrics_folder(root: str) -> str:
    """ROOT when it holds valid_df_fold CSVs; else the one run folder below it that does (said on
    stderr); several are a usage error naming them, since one metrics object describes one run."""
    from tui.core.metrics import fold_files, folders_with_folds

    if fold_files(Path(root)):
        return root
    found = folders_with_folds(Path(root))
    if len(found) == 1:
        note(f"metrics of {found[0]}")
        return str(found[0])
    if found:
        names = ", ".join(safe_text(os.path.relpath(f, root)) for f in found[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise _usage(
            f"{safe_text(root)}: no valid_df_fold_<k>.csv here; {len(found)} run folders below have them "
            f"({names}{more}): pass one of them"
        )
    return root  # compute_metrics says what is missing


# --- rich output ----------------------------------------------------------------------------------------


def _opt(v: Any) -> str:
    return "-" if v is None else str(v)


def _inspect_tables(result) -> None:
    from dataclasses import fields

    from rich.table import Table
    from rich.text import Text

    from tui.core.model import CheckpointInfo

    # the first table: every CheckpointInfo field but those shown elsewhere (title, problem lines)
    head_keys = [f.name for f in fields(CheckpointInfo) if f.name not in ("path", "problems", "mtime")]
    out = console()
    data = jsonable(result.to_json())
    head = Table(title=cell(data["path"]), show_header=False)
    head.add_column("key")
    head.add_column("value")
    for key in head_keys:
        head.add_row(key, cell(json.dumps(data[key])))
    out.print(head)
    for section in ("config", "tokenizer", "trainer_state"):
        value = data.get(section)
        if not value:
            continue
        table = Table(title=section, show_header=False)
        table.add_column("key")
        table.add_column("value")
        for k, v in value.items():
            if k == "log_history":
                v = f"{len(v)} entries"
            table.add_row(cell(k), cell(v if isinstance(v, str) else json.dumps(v)[:200]))
        out.print(table)
    weights = data.get("weights") or {}
    if weights.get("largest"):
        table = Table(title="largest tensors")
        for col in ("name", "dtype", "shape", "parameters"):
            table.add_column(col)
        for t in weights["largest"][:10]:
            table.add_row(
                cell(t.get("name")), cell(t.get("dtype")), cell(t.get("shape")), cell(t.get("parameters"))
            )
        out.print(table)
    for p in data["problems"]:
        out.print(Text.assemble(("! ", "red"), cell(p)))


def _metrics_table(result: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="fold metrics")
    for col in ("fold", "n", *FLOAT_KEYS):
        table.add_column(col, justify="right")

    def row(name: str, values: dict[str, Any]) -> None:
        cells = [f"{values[k]:.4f}" if isinstance(values.get(k), float) else "-" for k in FLOAT_KEYS]
        table.add_row(name, _opt(values.get("n")), *cells)

    for k, fold in result["folds"].items():
        row(k, fold)
    row("oof", result["oof"])
    row("mean", result["mean"])
    row("std", result["std"])
    out = console()
    out.print(table)
    out.print(cell(f"columns used: {json.dumps(result['columns'])}"))
    for p in result.get("problems", []):
        out.print(Text.assemble(("! ", "yellow"), cell(p)))
