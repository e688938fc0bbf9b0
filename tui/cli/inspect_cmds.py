"""Read-only commands: ``ls ROOT``, ``inspect PATH``, ``metrics ROOT`` (JSON with ``--json``, rich tables
otherwise). Exit 0 whenever the command ran, problems found included; 2 with one line for usage errors,
a missing path, or metrics that cannot be computed. rich and pandas are imported inside handlers."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

FLOAT_KEYS = ("accuracy", "f1_macro", "log_loss")


def register(sub) -> None:
    p = sub.add_parser("ls", help="list every checkpoint under ROOT")
    p.add_argument("root", metavar="ROOT")
    p.add_argument("--json", action="store_true", help="print a JSON array (docs/FORMAT.md, JSON CLI)")
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


def jsonable(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> null, undecodable file-name bytes -> ``\\xNN`` text."""
    from tui.core.scan import json_safe_path

    if isinstance(obj, dict):
        return {jsonable(k) if isinstance(k, str) else k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, str):
        return json_safe_path(obj)
    return obj


# C0 controls (newline and tab included), DEL and C1 controls: a file name holding ESC sequences must
# not drive the user's terminal, and one holding a newline must not fake a row of the output.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def printable(text: Any) -> str:
    """``text`` for a terminal: undecodable bytes and control characters shown as ``\\xNN``."""
    from tui.core.scan import json_safe_path

    return json_safe_path(str(text)).translate(_CONTROL)


def _need_folder(path: str, command: str) -> None:
    if not os.path.exists(path):
        raise _usage(f"{printable(path)}: no such folder")
    if not os.path.isdir(path):
        hint = "; use `ckpt-tui inspect PATH` for one checkpoint file" if command == "ls" else ""
        raise _usage(f"{printable(path)}: not a folder ({command} takes a ROOT folder{hint})")


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def cmd_ls(args) -> int:
    from tui.core.scan import iter_checkpoints

    _need_folder(args.root, "ls")
    errors: list[str] = []
    infos = list(iter_checkpoints(args.root, errors=errors))
    for line in errors:
        print(f"ckpt-tui: warning: {printable(line)}", file=sys.stderr)
    if args.json:
        _print_json([i.to_json() for i in infos])
        return 0
    _ls_table(infos)
    return 0


def cmd_inspect(args) -> int:
    from tui.core.inspect import NotACheckpoint, find_root, inspect_path

    if not os.path.exists(args.path):
        raise _usage(f"{printable(args.path)}: no such file or folder")
    root = args.root or str(find_root(args.path))
    try:
        result = inspect_path(root, args.path, verify_hashes=args.verify)
    except NotACheckpoint as e:
        raise _usage(printable(e)) from None
    if args.json:
        _print_json(result.to_json())
        return 0
    _inspect_tables(result)
    return 0


def cmd_metrics(args) -> int:
    from tui.core.metrics import MetricsError, compute_metrics

    _need_folder(args.root, "metrics")
    folder = _metrics_folder(args.root)
    try:
        result = compute_metrics(folder)
    except MetricsError as e:
        raise _usage(printable(e)) from None
    for k, fold in result["folds"].items():
        if fold.get("error"):
            print(f"ckpt-tui: warning: fold {k} left out: {printable(fold['error'])}", file=sys.stderr)
    if args.json:
        _print_json(result)
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
        print(f"ckpt-tui: metrics of {printable(found[0])}", file=sys.stderr)
        return str(found[0])
    if found:
        names = ", ".join(printable(os.path.relpath(f, root)) for f in found[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise _usage(
            f"{printable(root)}: no valid_df_fold_<k>.csv here; {len(found)} run folders below have them "
            f"({names}{more}): pass one of them"
        )
    return root  # compute_metrics says what is missing


# --- rich output ----------------------------------------------------------------------------------------


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def _opt(v: Any) -> str:
    return "-" if v is None else str(v)


def _console():
    from rich.console import Console

    # Piped output has no width; 80 columns would wrap every path into slivers.
    return Console(width=None if sys.stdout.isatty() else 200)


def _text(value: Any, style: str = ""):
    """A table cell from data read off disk: never parsed as markup, never a control character."""
    from rich.text import Text

    return Text(printable(value), style=style)


def _ls_table(infos) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{len(infos)} checkpoints", show_lines=False)
    for col in ("path", "kind", "ok", "size", "params", "dtypes", "step", "epoch", "fold", "best", "metric"):
        table.add_column(
            col, justify="right" if col in ("size", "params", "step", "epoch", "fold") else "left"
        )
    for i in infos:
        ok = Text("yes", style="green") if i.complete else Text(f"{len(i.problems)} problem(s)", style="red")
        if i.in_progress:
            ok.append(" in progress", style="yellow")
        metric = (
            f"{i.metric.get('name')}={i.metric['value']:.4g}"
            if i.metric and isinstance(i.metric.get("value"), (int, float))
            else "-"
        )
        table.add_row(
            _text(i.path),
            i.kind,
            ok,
            _size(i.size_bytes),
            _count(i.parameters),
            _text(", ".join(i.dtypes) if i.dtypes else "-"),
            _opt(i.step),
            _opt(i.epoch),
            _opt(i.fold),
            "*" if i.best else "",
            _text(metric),
        )
    console = _console()
    console.print(table)
    for i in infos:
        for p in i.problems:
            console.print(Text.assemble(("! ", "red"), _text(i.path), ": ", _text(p)))


def _inspect_tables(result) -> None:
    from rich.table import Table
    from rich.text import Text

    console = _console()
    data = jsonable(result.to_json())
    head = Table(title=_text(data["path"]), show_header=False)
    head.add_column("key")
    head.add_column("value")
    for key in (
        "kind",
        "complete",
        "size_bytes",
        "tensors",
        "parameters",
        "dtypes",
        "step",
        "epoch",
        "fold",
        "best",
        "run",
        "in_progress",
        "promoted",
        "metric",
    ):
        head.add_row(key, _text(json.dumps(data[key])))
    console.print(head)
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
            table.add_row(_text(k), _text(v if isinstance(v, str) else json.dumps(v)[:200]))
        console.print(table)
    weights = data.get("weights") or {}
    if weights.get("largest"):
        table = Table(title="largest tensors")
        for col in ("name", "dtype", "shape", "parameters"):
            table.add_column(col)
        for t in weights["largest"][:10]:
            table.add_row(
                _text(t.get("name")), _text(t.get("dtype")), _text(t.get("shape")), _text(t.get("parameters"))
            )
        console.print(table)
    for p in data["problems"]:
        console.print(Text.assemble(("! ", "red"), _text(p)))


def _metrics_table(result: dict[str, Any]) -> None:
    from rich.table import Table

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
    console = _console()
    console.print(table)
    console.print(_text(f"columns used: {json.dumps(result['columns'])}"))
