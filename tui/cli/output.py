"""How the CLI writes: JSON on stdout, rich tables for people, one-line messages on stderr.

Everything read off disk goes through ``tui.core.text``: ``json_safe`` inside JSON (the encoder escapes
control characters itself), ``safe_text`` everywhere else (tables, plans, warnings, usage errors).
rich is imported inside the functions that draw tables: ``--json`` never pays for it.
"""

from __future__ import annotations

import json
import math
import os
import sys

from tui.core.text import json_safe, safe_text

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any

# `ls` piped: the header line (listing.py writes the rows; `ls --help` names them without importing it)
TSV_COLUMNS = (
    "path", "kind", "status", "size_bytes", "allocated_bytes", "parameters", "dtypes", "step", "epoch",
    "fold", "best", "metric", "metric_value",
)  # fmt: skip


def jsonable(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> null, undecodable file-name bytes -> ``\\xNN`` text."""
    if isinstance(obj, dict):
        return {jsonable(k) if isinstance(k, str) else k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, str):
        return json_safe(obj)
    return obj


def print_json(obj: Any) -> None:
    """One JSON document on stdout: an object indented, a list with one element per line (a list of
    thousands of checkpoints stays fast to write and to read by eye)."""
    if isinstance(obj, list):
        body = ",\n".join("  " + _compact(item) for item in obj)
        sys.stdout.write(f"[\n{body}\n]\n" if obj else "[]\n")
        return
    clean = _compact_as_is(obj) is not None  # one C-level pass says whether jsonable's walk is needed
    sys.stdout.write(json.dumps(obj if clean else jsonable(obj), indent=2, allow_nan=False) + "\n")


def _compact(obj: Any) -> str:
    """``obj`` as one line of JSON."""
    text = _compact_as_is(obj)
    return text if text is not None else json.dumps(jsonable(obj), allow_nan=False)


def _compact_as_is(obj: Any) -> str | None:
    """``obj`` as one line of JSON by the C encoder when nothing needs ``jsonable`` (no NaN, no surrogate:
    ``ensure_ascii`` writes every non-ASCII character as ``\\uXXXX``, so ``\\ud`` is where a surrogate would
    show; a false alarm only costs the slow path), else None."""
    try:
        text = json.dumps(obj, allow_nan=False)
    except ValueError:
        return None
    return text if "\\ud" not in text else None


def note(text: Any) -> None:
    """``ckpt-tui: ...`` on stderr, terminal-safe: an error, a refusal, or what the command chose."""
    print(f"ckpt-tui: {safe_text(text)}", file=sys.stderr)


def warn(text: Any) -> None:
    """``ckpt-tui: warning: ...`` on stderr, terminal-safe."""
    note(f"warning: {text}")


def no_color() -> bool:
    """https://no-color.org: set and not empty."""
    return bool(os.environ.get("NO_COLOR"))


def console(width: int | None = None):
    from rich.console import Console

    # Piped output has no width; 80 columns would wrap every path into slivers.
    if width is None and not sys.stdout.isatty():
        width = 200
    return Console(width=width, color_system=None if no_color() else "auto", highlight=False)


def cell(value: Any, style: str = ""):
    """A table cell from data read off disk: never parsed as markup, never a control character."""
    from rich.text import Text

    return Text(safe_text(value), style=style)
