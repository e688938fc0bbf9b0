"""Everything a person reads: terminal-safe text, byte and count formatting, and metric direction.

Names on a shared filesystem are chosen by other people. A folder named ``evil\\x1b]0;pwned\\x07`` must
not retitle the user's terminal, one holding ``\\n`` must not fake a row, one holding U+202E must not
reverse what follows it. ``safe_text`` is the one function that makes any string fit to print: the app,
the CLI tables and every error line pass what they show through it. ``json_safe`` is the rule for JSON
output, where the JSON encoder escapes control characters itself and only undecodable bytes need care.

Standard library only.
"""

from __future__ import annotations

import math
import re

MESSAGE_LIMIT = 2000  # characters of one message (a problem line, a notification) before it is cut

# Undecodable file-name bytes 0x80-0xFF become these lone surrogates (surrogateescape): show the byte.
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def _escape(char: str) -> str:
    code = ord(char)
    if code in _ESCAPED_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe_text(text: object, limit: int | None = None) -> str:
    """``text`` as a terminal may print it: one line, and nothing in it acts on the terminal.

    Escaped as ``\\xNN`` / ``\\uNNNN``: C0 controls (newline and tab included), DEL, C1 controls, lone
    surrogates (an undecodable file-name byte shows as the byte, ``\\xff``), and every other character
    Python does not call printable: format characters (bidi overrides and isolates U+202A-U+202E,
    U+2066-U+2069, zero-width characters, U+FEFF), line and paragraph separators, spaces other than
    U+0020, private-use and unassigned code points. ``limit`` cuts the text (before escaping) to that
    many characters, ending in "...".
    """
    text = text if isinstance(text, str) else str(text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def safe_message(text: object) -> str:
    """``safe_text`` cut to ``MESSAGE_LIMIT``: for problem lines, errors and notifications."""
    return safe_text(text, MESSAGE_LIMIT)


def json_safe(text: str) -> str:
    """``text`` as valid UTF-8 for JSON: lone surrogates (undecodable file-name bytes) as ``\\xNN`` text,
    other lone surrogates as ``\\uNNNN`` text. Everything else is left to the JSON encoder."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join(_escape(c) if "\ud800" <= c <= "\udfff" else c for c in text)


MAX_PROBLEMS = 20  # problem lines of one kind of report before the rest are counted


def capped(problems: list[str], limit: int = MAX_PROBLEMS) -> list[str]:
    """The first ``limit`` problems and one line counting the rest: 5,000 missing files are a count, not
    5,000 lines."""
    if len(problems) <= limit:
        return problems
    return problems[:limit] + [f"... and {len(problems) - limit} more problems of this kind"]


def quoted(name: str, limit: int = 80) -> str:
    """A tensor or file name inside a message: repr'd, and cut when long (names are attacker-controlled)."""
    return repr(name if len(name) <= limit else name[: limit - 3] + "...")


def first_line(error: BaseException | str, limit: int = 200) -> str:
    """The first line of an exception's message (or of ``error`` itself), cut to ``limit``; the class name
    when the message is empty."""
    text = str(error).strip()
    if not text:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    return text.splitlines()[0][:limit]


# --- numbers --------------------------------------------------------------------------------------------

_BYTE_UNITS = ("B", "K", "M", "G", "T", "P")


def format_bytes(n: int | float | None, *, compact: bool = False) -> str:
    """A size for people, in powers of 1024: ``"1.5 MiB"``, or with ``compact`` (table cells)
    ``"1.5M"``; bytes below 1 KiB are whole (``"512 B"`` / ``"512B"``); None is ``"?"``."""
    if n is None or isinstance(n, bool) or not isinstance(n, int | float):
        return "?"
    try:
        size = float(n)
    except OverflowError:  # an int of 400 digits read off disk
        return "?"
    if not math.isfinite(size):
        return "?"
    exp = 0
    while abs(size) >= 1024 and exp < len(_BYTE_UNITS) - 1:
        size /= 1024
        exp += 1
    unit = _BYTE_UNITS[exp]
    if compact:
        return f"{size:.0f}B" if exp == 0 else f"{size:.1f}{unit}"
    return f"{size:.0f} B" if exp == 0 else f"{size:.1f} {unit}iB"


def format_count(n: int | None) -> str:
    """A parameter or tensor count in a narrow column: ``"1.2B"``, ``"110.0M"``, ``"3.4k"``, ``"17"``."""
    if n is None:
        return "-"
    if n >= 10**15:  # no model has a quadrillion parameters; a number read off disk might
        return f"{n:.2g}" if isinstance(n, float) and math.isfinite(n) else "?"
    for unit, div in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def plural(n: int, one: str, many: str | None = None) -> str:
    """``n`` and the noun that agrees with it: ``"1 item"``, ``"3 items"``, ``"2 trash entries"``."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def format_value(value: object, spec: str = ".4g", missing: str = "-") -> str:
    """A table cell for a metric or config value: floats with ``spec``, None as ``missing``, else ``str``.
    Not terminal-safe: text from disk still goes through ``safe_text``."""
    if value is None:
        return missing
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


# --- metric direction -----------------------------------------------------------------------------------

# A metric is lower-is-better when its name contains one of these words ...
_LOWER_WORDS = ("loss", "error", "perplexity")
# ... or has one of these abbreviations as a whole token ("eval_wer", "val/ppl"; not "answer", "lower").
_LOWER_TOKENS = frozenset({"ppl", "mse", "mae", "rmse", "wer", "cer"})
_TOKEN_SPLIT = re.compile(r"[^a-z0-9]+")


def bare_metric_name(name: str) -> str:
    """``eval_loss`` -> ``loss``: HF prefixes eval metrics with ``eval_``; both spellings name one metric."""
    return name[len("eval_") :] if name.startswith("eval_") else name


def lower_is_better(metric: str | None) -> bool:
    """True for metrics where smaller is better (losses, errors, perplexity, ppl, mse, wer ...).

    The one rule for the app's "best" column, prune's ranking, the trainer's model selection and the
    fold weights of prediction."""
    name = (metric or "").lower()
    return any(word in name for word in _LOWER_WORDS) or not _LOWER_TOKENS.isdisjoint(
        _TOKEN_SPLIT.split(name)
    )
