"""``ckpt-tui convert universal STEP [--root ROOT] [--json]``: DeepSpeed's universal form written into a ZeRO
step checkpoint through the commit protocol (``tui.core.universal``; the writing is ``tui.convert``'s)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tui.cli.output import print_json
from tui.core.text import format_bytes, safe_text

EXIT_OK, EXIT_REFUSED = 0, 1


def register(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="universal: write DeepSpeed's universal form into a ZeRO step checkpoint (resumes on any "
        "number of processes)",
    )
    p.add_argument("form", choices=("universal",), metavar="FORM", help="universal")
    p.add_argument("path", metavar="PATH", help="a step checkpoint (step_N) written under DeepSpeed ZeRO")
    p.add_argument(
        "--root", default=None, help="ROOT the files must stay inside (default: PATH's run's folder)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_convert)


def cmd_convert(args) -> int:
    from tui import convert
    from tui.cli.ops_cmds import _root_for
    from tui.convert.universal import write_universal
    from tui.core.universal import UniversalError, convert_universal

    if not os.path.isdir(args.path):
        from tui.cli import UsageError

        raise UsageError(f"{safe_text(args.path)}: no such folder")
    step = Path(os.path.abspath(args.path))
    root = Path(os.path.realpath(_root_for(args, [step])))
    try:
        result = convert_universal(root, step, write_universal)
    except (UniversalError, convert.ConvertError) as e:
        print(f"ckpt-tui: {safe_text(e)}", file=sys.stderr)
        if args.json:
            print_json({"error": str(e)})
        return EXIT_REFUSED
    if args.json:
        print_json(result.to_json())
    else:
        print(
            f"Wrote DeepSpeed's universal form into {safe_text(result.source)}/universal ({result.files_added} "
            f"files, {format_bytes(result.bytes_added)}, {result.seconds:.1f} s); it resumes on any number of "
            "processes."
        )
    return EXIT_OK
