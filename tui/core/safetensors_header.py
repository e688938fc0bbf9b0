"""Safetensors header parser with hard limits; never reads tensor data.

API (docs/ARCHITECTURE.md, "Core API")::

    class HeaderError(ValueError)      # one-line message naming the file and the problem
    @dataclass TensorEntry(name, dtype, shape, start, end)   # offsets relative to the data section
        .numel, .nbytes (= end - start), .expected_nbytes (numel * itemsize; None if misaligned)
    @dataclass SafetensorsHeader(path, header_len, file_size, tensors, metadata, problems)
        .data_size, .parameters, .dtypes
    read_header(path, *, max_header_bytes=100 << 20) -> SafetensorsHeader   # raises HeaderError
    DTYPE_BITS: dict[str, int]        # every dtype name safetensors 0.8 knows, with its width in bits

Layout: 8 bytes little-endian u64 ``N``, then ``N`` bytes of UTF-8 JSON (an object mapping tensor names
to ``{"dtype", "shape", "data_offsets": [start, end]}`` plus an optional ``__metadata__`` str->str map),
then the data section. Reading costs two ``read`` calls: 8 bytes and ``N`` bytes.

Why not ``safetensors.safe_open``: it mmaps the whole file and parses in Rust with limits we do not control
and error messages we cannot shape, and on a truncated file it refuses to say anything at all. We parse
the header ourselves and sort what we find into two bins:

* ``HeaderError`` (the file cannot be described): shorter than 8 bytes (a zero-byte file included: the
  message says "zero-byte file"), not a regular file, header length above ``max_header_bytes`` or beyond
  the end of the file (e.g. ``2**60``), header not UTF-8, not JSON, not a JSON object, and entries with an
  unknown dtype, a malformed or negative or overflowing (> u64) shape, or bad ``data_offsets``.
* ``SafetensorsHeader.problems`` (the header is readable, the file would not load): data beyond the end
  of the file (truncated), overlapping offsets, gaps or trailing bytes (non-contiguous data, which
  safetensors refuses), byte length != numel * itemsize, a malformed ``__metadata__``.

tests/core/test_safetensors_header.py cross-checks this parser against ``safetensors.safe_open`` on
files written by ``safetensors.torch.save_file``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from tui.core.files import open_regular_file
from tui.core.text import quoted, safe_message, safe_text

__all__ = [
    "DTYPE_BITS",
    "HeaderError",
    "SafetensorsHeader",
    "TensorEntry",
    "read_header",
]

# Every dtype of safetensors 0.8 (its Rust ``Dtype`` enum, 22 variants) with its width in bits. F4 and the
# F6 types are packed sub-byte types: a tensor's byte length is numel * bits / 8, which must be whole.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

_U64 = 1 << 64
_MAX_PROBLEMS = 12  # per kind of problem; the rest are counted in one line


class HeaderError(ValueError):
    """A safetensors file whose header cannot be read; the message is one line naming the problem."""


@dataclass
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # offsets relative to the start of the data section (after 8 + header_len bytes)
    end: int
    numel: int = field(init=False, repr=False, compare=False)  # product of shape, computed once

    def __post_init__(self) -> None:
        n = 1
        for d in self.shape:
            n *= d
        self.numel = n

    @property
    def nbytes(self) -> int:
        """Bytes the header assigns to this tensor."""
        return self.end - self.start

    @property
    def expected_nbytes(self) -> int | None:
        """Bytes numel * itemsize needs; None when a packed dtype does not end on a byte boundary."""
        bits = self.numel * DTYPE_BITS[self.dtype]
        return None if bits % 8 else bits // 8


@dataclass
class SafetensorsHeader:
    path: str
    header_len: int
    file_size: int
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str] | None
    problems: list[str] = field(default_factory=list)

    @property
    def data_size(self) -> int:
        """Bytes actually present after the header."""
        return self.file_size - 8 - self.header_len

    @property
    def parameters(self) -> int:
        return sum(t.numel for t in self.tensors.values())

    @property
    def dtypes(self) -> dict[str, int]:
        """dtype -> parameters."""
        out: dict[str, int] = {}
        for t in self.tensors.values():
            out[t.dtype] = out.get(t.dtype, 0) + t.numel
        return out


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    left = n
    while left > 0:
        chunk = os.read(fd, min(left, 16 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_header(path: str | os.PathLike, *, max_header_bytes: int = 100 << 20) -> SafetensorsHeader:
    """Parse the header of the safetensors file at ``path`` (see the module docstring for the rules)."""
    try:
        header = _read_header(path, max_header_bytes)
    except HeaderError as e:
        raise HeaderError(safe_text(str(e), 500)) from None
    header.problems = [safe_message(p) for p in header.problems]
    return header


def _read_header(path: str | os.PathLike, max_header_bytes: int) -> SafetensorsHeader:
    name = os.fsdecode(path)
    label = os.path.basename(name) or name
    try:
        fd, size = open_regular_file(name)
    except ValueError as e:
        raise HeaderError(f"{label}: {e}") from None
    except OSError as e:
        raise HeaderError(f"{label}: cannot open ({e.strerror or e})") from None
    try:
        if size == 0:
            raise HeaderError(f"{label}: zero-byte file (no header, no weights)")
        if size < 8:
            raise HeaderError(
                f"{label}: {size} bytes, too short for a safetensors header (8-byte length prefix)"
            )
        try:
            prefix = _read_exact(fd, 8)
        except OSError as e:
            raise HeaderError(f"{label}: cannot read ({e.strerror or e})") from None
        if len(prefix) < 8:
            raise HeaderError(f"{label}: file shrank while reading its header")
        n = int.from_bytes(prefix, "little")
        if n > max_header_bytes:
            raise HeaderError(
                f"{label}: header length {n} bytes exceeds the {max_header_bytes}-byte limit "
                "(corrupt file or not safetensors)"
            )
        if 8 + n > size:
            raise HeaderError(
                f"{label}: header length {n} bytes runs past the end of the {size}-byte file "
                "(truncated file or not safetensors)"
            )
        try:
            raw = _read_exact(fd, n)
        except OSError as e:
            raise HeaderError(f"{label}: cannot read ({e.strerror or e})") from None
        if len(raw) < n:
            raise HeaderError(f"{label}: file shrank while reading its header")
    finally:
        os.close(fd)
    return _parse(name, label, raw, size)


def _parse(name: str, label: str, raw: bytes, size: int) -> SafetensorsHeader:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HeaderError(f"{label}: header is not UTF-8 (bad byte at offset {8 + e.start})") from None
    try:
        obj = json.loads(text)
    except RecursionError:
        raise HeaderError(f"{label}: header JSON is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, and ints longer than Python's digit limit
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HeaderError(f"{label}: header is not valid JSON ({msg[:120]})") from None
    if not isinstance(obj, dict):
        raise HeaderError(f"{label}: header is a JSON {_json_kind(obj)}, not an object")

    problems: list[str] = []
    if not text.startswith("{"):
        problems.append(f"{label}: header does not start with '{{' (safetensors refuses it)")
    metadata: dict[str, str] | None = None
    tensors: dict[str, TensorEntry] = {}
    for key, info in obj.items():
        if key == "__metadata__":
            if isinstance(info, dict) and all(isinstance(v, str) for v in info.values()):
                metadata = info
            else:
                problems.append(
                    f"{label}: __metadata__ is not a string-to-string map (safetensors refuses it)"
                )
            continue
        tensors[key] = _entry(label, key, info)

    data_size = size - 8 - len(raw)
    problems.extend(_layout_problems(label, tensors, data_size))
    return SafetensorsHeader(
        path=name,
        header_len=len(raw),
        file_size=size,
        tensors=tensors,
        metadata=metadata,
        problems=problems,
    )


def _json_kind(obj: Any) -> str:
    if isinstance(obj, list):
        return "array"
    if isinstance(obj, str):
        return "string"
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "boolean"
    return "number"


def _is_uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < _U64


def _entry(label: str, key: str, info: Any) -> TensorEntry:
    shown = quoted(key)
    if not isinstance(info, dict):
        raise HeaderError(f"{label}: tensor {shown}: entry is not an object")
    dtype = info.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        bad = repr(dtype)[:40]
        raise HeaderError(f"{label}: tensor {shown}: unknown dtype {bad}")
    shape = info.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise HeaderError(f"{label}: tensor {shown}: shape must be a list of integers")
    if any(d < 0 for d in shape):
        raise HeaderError(f"{label}: tensor {shown}: negative dimension in shape {shape[:8]}")
    numel, bits = 1, DTYPE_BITS[dtype]
    for d in shape:
        if d >= _U64:
            raise HeaderError(f"{label}: tensor {shown}: shape dimension {d} overflows u64")
        numel *= d
        # safetensors computes numel * bits in a u64; checking as we go also keeps a hostile shape of
        # millions of huge dimensions from growing a giant integer (quadratic time).
        if numel * bits >= _U64:
            raise HeaderError(f"{label}: tensor {shown}: shape {shape[:8]} overflows u64 (numel * bits)")
    offsets = info.get("data_offsets")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_uint(v) for v in offsets)):
        raise HeaderError(f"{label}: tensor {shown}: data_offsets must be two non-negative integers")
    start, end = offsets
    if end < start:
        raise HeaderError(f"{label}: tensor {shown}: data_offsets end {end} < start {start}")
    return TensorEntry(name=key, dtype=dtype, shape=tuple(shape), start=start, end=end)


def _layout_problems(label: str, tensors: dict[str, TensorEntry], data_size: int) -> list[str]:
    out: list[str] = []
    sizes: list[str] = []
    for t in tensors.values():
        want = t.expected_nbytes
        if want is None:
            sizes.append(f"{quoted(t.name)} ({t.dtype} x {t.numel} does not end on a byte boundary)")
        elif want != t.nbytes:
            sizes.append(f"{quoted(t.name)} ({t.nbytes} bytes for {t.numel} x {t.dtype} = {want})")
    out.extend(_capped(f"{label}: byte length != numel * itemsize for", sizes))

    ordered = sorted(tensors.values(), key=lambda t: (t.start, t.end))
    overlaps: list[str] = []
    gaps: list[str] = []
    cursor = 0
    prev: TensorEntry | None = None
    for t in ordered:
        if t.start < cursor and prev is not None:
            overlaps.append(
                f"{quoted(prev.name)} and {quoted(t.name)} (bytes {t.start}-{min(cursor, t.end)})"
            )
        elif t.start > cursor:
            gaps.append(f"{t.start - cursor} unused bytes before {quoted(t.name)}")
        if t.end >= cursor:
            cursor, prev = t.end, t
    out.extend(_capped(f"{label}: overlapping data offsets:", overlaps))
    out.extend(_capped(f"{label}: non-contiguous data offsets:", gaps))

    if cursor > data_size:
        last = prev.name if prev is not None else "?"
        out.append(
            f"{label}: truncated: tensor data ends at byte {cursor} of the data section (tensor {quoted(last)}) "
            f"but the file holds only {max(data_size, 0)} data bytes"
        )
    elif cursor < data_size:
        out.append(
            f"{label}: {data_size - cursor} trailing bytes after the last tensor (safetensors refuses it)"
        )
    return out


def _capped(head: str, items: list[str]) -> list[str]:
    if not items:
        return []
    shown = "; ".join(items[:_MAX_PROBLEMS])
    more = f"; and {len(items) - _MAX_PROBLEMS} more" if len(items) > _MAX_PROBLEMS else ""
    return [f"{head} {shown}{more}"]
