"""``ckpt-tui ls --filter EXPR``: which checkpoints a listing keeps (repeat ``--filter``: all must hold).

Modelled on ``hf cache ls --filter``: ``KEY OP VALUE`` with OP one of ``= != > >= < <=``, or a bare flag::

    kind=deepspeed  kind!=torch-pickle  fold=0  step>=1000  run=exp1
    size>1G         (apparent size; K M G T are powers of 1024, a trailing B or iB is allowed)
    age>7d          (modified more than 7 days ago; s m h d w y)
    larger=1G       (same as size>1G)     older=7d  (same as age>7d)
    broken  complete  best  promoted  in-progress  unsafe   (a leading ! negates: !best;
    unsafe: a pickle in it would run code on torch.load, docs/SECURITY.md)

Unknown keys, operators or values are a usage error naming the accepted ones. Checkpoints whose value is
unknown (no step, no fold, no mtime) never match a comparison on it.
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable

from tui.core.model import KINDS, CheckpointInfo, run_of

Predicate = Callable[[CheckpointInfo], bool]

_OPS: dict[str, Callable[[object, object], bool]] = {
    "=": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}  # fmt: skip
_EXPR = re.compile(r"^\s*([a-z_-]+)\s*(!=|>=|<=|=|>|<)\s*(.+?)\s*$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$", re.IGNORECASE)
_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdwy])$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}

FLAGS: dict[str, Predicate] = {
    "broken": lambda i: not i.complete,
    "complete": lambda i: i.complete,
    "best": lambda i: i.best,
    "promoted": lambda i: i.promoted,
    "in-progress": lambda i: i.in_progress,
    "unsafe": lambda i: i.pickle_scan == "unsafe",
}
KEYS = ("kind", "fold", "step", "run", "size", "age", "larger", "older")
SYNTAX = (
    f"KEY OP VALUE with KEY one of {', '.join(KEYS)} and OP one of = != > >= < <= "
    f"(e.g. kind=deepspeed, size>1G, age>7d), or one of {', '.join(FLAGS)} (!flag negates)"
)


class FilterError(ValueError):
    """An expression that cannot be read; the message is one line and says what is accepted."""


def parse_size(text: str) -> int:
    m = _SIZE.match(text.strip())
    if not m:
        raise FilterError(f"{text!r}: not a size (e.g. 500M, 1G, 1.5GiB)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_age(text: str) -> float:
    m = _AGE.match(text.strip())
    if not m:
        raise FilterError(f"{text!r}: not an age (e.g. 30m, 12h, 7d, 2w, 1y)")
    return float(m.group(1)) * _AGE_UNITS[m.group(2).lower()]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise FilterError(f"{text!r}: not a whole number") from None


def parse(expr: str, *, now: float | None = None) -> Predicate:
    """One ``--filter`` expression as a predicate on CheckpointInfo; raises FilterError."""
    text = expr.strip()
    negate = text.startswith("!") and "=" not in text
    flag = text[1:] if negate else text
    if flag in FLAGS:
        test = FLAGS[flag]
        return (lambda i: not test(i)) if negate else test
    m = _EXPR.match(text)
    if not m:
        raise FilterError(f"--filter {expr!r}: expected {SYNTAX}")
    key, op, value = m.group(1), m.group(2), m.group(3)
    if key == "larger":
        key, op = "size", ">" if op == "=" else op
    elif key == "older":
        key, op = "age", ">" if op == "=" else op
    if key not in KEYS:
        raise FilterError(f"--filter {expr!r}: unknown key {key!r}; expected {SYNTAX}")
    compare = _OPS[op]
    if key in ("kind", "run"):
        if op not in ("=", "!="):
            raise FilterError(f"--filter {expr!r}: {key} takes = or !=")
        if key == "kind" and value not in KINDS:
            raise FilterError(f"--filter {expr!r}: unknown kind; one of {', '.join(KINDS)}")
        if key == "kind":
            return lambda i: compare(i.kind, value)
        return lambda i: compare(run_of(i), value)
    if key == "size":
        limit = parse_size(value)
        return lambda i: compare(i.size_bytes, limit)
    if key == "age":
        seconds = parse_age(value)
        clock = time.time() if now is None else now
        return lambda i: i.mtime is not None and compare(clock - i.mtime, seconds)
    number = _int(value)
    field = key  # fold, step
    return lambda i: getattr(i, field) is not None and compare(getattr(i, field), number)


def combine(exprs: list[str] | None, *, now: float | None = None) -> Predicate:
    """All of ``exprs`` as one predicate (every one must hold); no expressions keep everything."""
    tests = [parse(e, now=now) for e in exprs or []]
    return lambda info: all(t(info) for t in tests)
