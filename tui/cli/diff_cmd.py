"""``ckpt-tui diff A B [--json] [--all] [--weights [--max-bytes SIZE]]``: two checkpoints compared.

Every config key that differs (nested keys dotted; tool versions and load paths skipped unless ``--all``),
every tensor whose name, dtype or shape differs (safetensors headers, MindSpore, DCP, a weight pickle's
static scan), and with ``--weights`` the max abs difference of each tensor's values, streamed from
safetensors (``tui.core.weight_compare``; refused over ``--max-bytes``, default 8 GiB for both sides
together). Exit 0 when compared (differences are data), 1 when the weight comparison was refused, 2 usage.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from tui.cli.output import note, print_json
from tui.core.text import format_bytes, plural, safe_text

EXIT_OK, EXIT_REFUSED = 0, 1
SHOWN = 50  # rows per section in the text output (--json has them all)
VALUE_CHARS = 60


def register(sub) -> None:
    p = sub.add_parser(
        "diff",
        help="compare two checkpoints: config keys, tensor names / dtypes / shapes, and (--weights) values",
    )
    p.add_argument("a", metavar="A", help="checkpoint folder or file")
    p.add_argument("b", metavar="B", help="checkpoint folder or file")
    p.add_argument("--json", action="store_true", help="print one JSON object (docs/FORMAT.md, JSON CLI)")
    p.add_argument(
        "--all", action="store_true", help="also config keys that differ between any two saves "
        "(transformers_version, _name_or_path, ...)",
    )  # fmt: skip
    p.add_argument(
        "--weights",
        action="store_true",
        help="also compare the values: max abs difference per tensor, read from safetensors in chunks",
    )
    p.add_argument(
        "--max-bytes",
        default=None,
        metavar="SIZE",
        help="--weights reads at most this much from both sides together (default 8G; K M G T)",
    )
    p.set_defaults(handler=cmd_diff)


def _usage(message: str) -> Exception:
    from tui.cli import UsageError

    return UsageError(message)


def _max_bytes(text: str | None) -> int:
    from tui.cli.filters import FilterError, parse_size
    from tui.core.weight_compare import DEFAULT_MAX_BYTES

    if text is None:
        return DEFAULT_MAX_BYTES
    try:
        return parse_size(text)
    except FilterError as e:
        raise _usage(f"--max-bytes {safe_text(e)}") from None


def cmd_diff(args) -> int:
    from tui.core.diff import diff_checkpoints

    for path in (args.a, args.b):
        if not os.path.exists(path):
            raise _usage(f"{safe_text(path)}: no such file or folder")
    if args.max_bytes is not None and not args.weights:
        raise _usage("--max-bytes goes with --weights")
    limit = _max_bytes(args.max_bytes)
    result = diff_checkpoints(args.a, args.b, include_noise=args.all)
    weights, refused = None, None
    if args.weights:
        weights, refused = _compare(args.a, args.b, limit)
    if args.json:
        out: dict[str, Any] = result.to_json()
        out["noise_included"] = args.all
        out["weights"] = weights.to_json() if weights is not None else None
        if refused:
            out["weights_error"] = refused
        print_json(out)
    else:
        sys.stdout.write(diff_text(result, weights, include_noise=args.all))
    if refused:
        note(refused)
        return EXIT_REFUSED
    return EXIT_OK


def _compare(a: str, b: str, limit: int):
    from tui.core.weight_compare import CompareError, compare_weights

    try:
        return compare_weights(a, b, max_bytes=limit), None
    except CompareError as e:
        return None, str(e)


# --- text -----------------------------------------------------------------------------------------------


def _value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v)
    return safe_text(text, VALUE_CHARS)


def _side(entry) -> str:
    return "(absent)" if entry is None else f"{safe_text(entry[0])} {list(entry[1])}"


def _rows(pairs: list[tuple[str, str]]) -> list[str]:
    width = min(max((len(k) for k, _ in pairs), default=0), 48)
    return [f"  {k:<{width}}  {v}" for k, v in pairs[:SHOWN]] + (
        [f"  ... and {len(pairs) - SHOWN} more (--json lists them all)"] if len(pairs) > SHOWN else []
    )


def diff_text(result, weights, *, include_noise: bool) -> str:
    lines = [f"A: {safe_text(result.a)}", f"B: {safe_text(result.b)}"]
    noise = "" if include_noise else " (tool versions and load paths skipped; --all shows them)"
    n = len(result.config)
    lines.append(f"config: {plural(n, 'key')} differ{'s' if n == 1 else ''}{noise}")
    lines += _rows(
        [(safe_text(c.key), f"{'(absent)' if c.only_in == 'b' else _value(c.a)} -> "
          f"{'(absent)' if c.only_in == 'a' else _value(c.b)}") for c in result.config]
    )  # fmt: skip
    n = len(result.tensors)
    lines.append(
        f"tensors: {n} differ in name, dtype or shape ({result.tensors_compared} present in both)"
    )
    lines += _rows([(safe_text(t.name), f"{_side(t.a)} -> {_side(t.b)}") for t in result.tensors])
    if weights is not None:
        lines += _weights_text(weights)
    lines += [f"! {safe_text(p)}" for p in result.problems]
    return "\n".join(lines) + "\n"


def _weights_text(weights) -> list[str]:
    same = sum(1 for t in weights.tensors if t.identical)
    worst = weights.max_abs_diff
    head = (
        f"weights: {len(weights.tensors)} tensors compared ({format_bytes(weights.bytes_read)} read), "
        f"{same} identical; max abs difference {'-' if worst is None else f'{worst:.6g}'}"
    )
    differing = [t for t in weights.tensors if not t.identical]
    rows = [
        (safe_text(t.name), f"{t.max_abs_diff:.6g}" + (f"  ({t.nan_mismatches} NaN mismatches)" if t.nan_mismatches else ""))
        for t in differing
    ]
    out = [head, *_rows(rows)]
    if weights.skipped:
        out.append(f"  not compared: {len(weights.skipped)} (e.g. {safe_text(weights.skipped[0][0])}: "
                   f"{safe_text(weights.skipped[0][1])})")  # fmt: skip
    out += [f"! {safe_text(p)}" for p in weights.problems]
    return out
