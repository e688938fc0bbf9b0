"""The values of two checkpoints' weights compared: max abs difference per tensor, from safetensors only.

Each tensor present on both sides with the same shape is read in chunks of ``CHUNK_ELEMENTS`` from both
files (never mapped, never loaded whole: memory stays at a few chunks whatever the model's size), and a
chunk whose bytes are identical costs one ``bytes`` comparison. Differing chunks are converted to float64
with numpy (BF16 by shifting its 16 bits into the top half of a float32) and ``max(|a - b|)`` is kept.
Different dtypes on the two sides (an fp32 checkpoint against its bf16 export) are compared by value.
NaN at the same place on both sides counts as equal; NaN on one side only is counted in
``nan_mismatches``. Packed and 8-bit float types (F8_*, F6_*, F4) are listed as not compared.

Before reading anything the bytes both sides would read are added up; above ``max_bytes`` the comparison
is refused with one line (``CompareError``). numpy is imported by this module only: the scan, ``ls`` and
the app's start never pay for it. No torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tui.core.files import open_regular_file
from tui.core.safetensors_header import DTYPE_BITS, HeaderError, read_header
from tui.core.text import format_bytes, quoted
from tui.core.weight_files import resolve_weight_files

DEFAULT_MAX_BYTES = 8 << 30  # both sides together; --max-bytes raises it
CHUNK_ELEMENTS = 1 << 20  # per read: 4 MiB of F32, and 8 MiB float64 arrays while comparing

_NUMPY: dict[str, str] = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "u1",
}  # fmt: skip


class CompareError(ValueError):
    """The comparison cannot start: no safetensors on a side, or too many bytes to read. One line."""


@dataclass
class TensorValues:
    name: str
    dtype_a: str
    dtype_b: str
    shape: tuple[int, ...]
    max_abs_diff: float
    identical: bool  # byte for byte (same dtype) or value for value
    nan_mismatches: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "dtype_a": self.dtype_a, "dtype_b": self.dtype_b, "shape": list(self.shape),
            "max_abs_diff": self.max_abs_diff, "identical": self.identical, "nan_mismatches": self.nan_mismatches,
        }  # fmt: skip


@dataclass
class WeightsComparison:
    tensors: list[TensorValues] = field(default_factory=list)  # largest difference first
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why not compared)
    bytes_read: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float | None:
        return max((t.max_abs_diff for t in self.tensors), default=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "max_abs_diff": self.max_abs_diff,
            "tensors": [t.to_json() for t in self.tensors],
            "skipped": [{"name": n, "reason": r} for n, r in self.skipped],
            "bytes_read": self.bytes_read,
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class _Located:
    """Where one tensor's bytes are: file, absolute offset, byte length, dtype, shape."""

    path: str
    offset: int
    nbytes: int
    dtype: str
    shape: tuple[int, ...]


def _locate(path: str | os.PathLike, side: str) -> tuple[dict[str, _Located], list[str]]:
    plan = resolve_weight_files(path)
    if not plan.names:
        raise CompareError(
            f"{side} {os.fspath(path)}: no safetensors weights (the weight comparison reads safetensors only)"
        )
    out: dict[str, _Located] = {}
    problems = [f"{side}: {p}" for p in plan.problems]
    for name in plan.names:
        file = os.path.join(plan.base, name)
        try:
            header = read_header(file)
        except HeaderError as e:
            problems.append(f"{side}: {e}")
            continue
        problems += [f"{side}: {p}" for p in header.problems]
        base = 8 + header.header_len
        for tname, dtype, shape, start, end, _numel in header.entries:
            out.setdefault(tname, _Located(file, base + start, end - start, dtype, tuple(shape)))
    return out, problems


def compare_weights(
    a: str | os.PathLike,
    b: str | os.PathLike,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    cancelled: Callable[[], bool] = lambda: False,
) -> WeightsComparison:
    """Max abs difference per tensor between the safetensors weights of ``a`` and ``b`` (files, folders
    or sharded indexes). Raises ``CompareError`` (one line) before reading any data when a side has no
    safetensors or the bytes to read exceed ``max_bytes``; anything else becomes ``problems``."""
    side_a, problems_a = _locate(a, "A")
    side_b, problems_b = _locate(b, "B")
    out = WeightsComparison(problems=problems_a + problems_b)
    pairs: list[tuple[str, _Located, _Located]] = []
    for name in sorted(set(side_a) & set(side_b)):
        ta, tb = side_a[name], side_b[name]
        if ta.shape != tb.shape:
            out.skipped.append((name, f"shape {list(ta.shape)} vs {list(tb.shape)}"))
        elif ta.dtype not in _NUMPY or tb.dtype not in _NUMPY:
            odd = ta.dtype if ta.dtype not in _NUMPY else tb.dtype
            out.skipped.append((name, f"dtype {odd} is not compared"))
        else:
            pairs.append((name, ta, tb))
    only = sorted(set(side_a) ^ set(side_b))
    out.skipped += [(n, "only in A" if n in side_a else "only in B") for n in only]
    total = sum(ta.nbytes + tb.nbytes for _, ta, tb in pairs)
    if total > max_bytes:
        raise CompareError(
            f"comparing the weights would read {format_bytes(total)}, over the {format_bytes(max_bytes)} "
            "limit: pass --max-bytes to allow more"
        )
    files: dict[str, int] = {}
    try:
        for name, ta, tb in pairs:
            if cancelled():
                out.problems.append("cancelled: some tensors were not compared")
                break
            try:
                out.tensors.append(_compare_one(name, ta, tb, files, out))
            except (OSError, ValueError) as e:
                out.skipped.append((name, f"unreadable ({e})"))
    finally:
        for fd in files.values():
            os.close(fd)
    out.tensors.sort(key=lambda t: (-t.max_abs_diff, t.name))
    return out


def _fd(files: dict[str, int], path: str) -> int:
    if path not in files:
        files[path], _ = open_regular_file(path)
    return files[path]


def _read(fd: int, offset: int, n: int, name: str) -> bytes:
    data = os.pread(fd, n, offset)
    if len(data) != n:
        raise ValueError(f"{quoted(name)}: data ends early (truncated file)")
    return data


def _values(raw: bytes, dtype: str) -> np.ndarray:
    arr = np.frombuffer(raw, dtype=_NUMPY[dtype])
    if dtype == "BF16":  # the top 16 bits of a float32
        return (arr.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return arr.astype(np.float64)


def _compare_one(
    name: str, ta: _Located, tb: _Located, files: dict[str, int], out: WeightsComparison
) -> TensorValues:
    size_a, size_b = DTYPE_BITS[ta.dtype] // 8, DTYPE_BITS[tb.dtype] // 8
    numel = ta.nbytes // size_a
    if numel * size_a != ta.nbytes or numel * size_b != tb.nbytes:
        raise ValueError("byte length does not match its shape and dtype")
    fa, fb = _fd(files, ta.path), _fd(files, tb.path)
    same_dtype = ta.dtype == tb.dtype
    step = CHUNK_ELEMENTS
    worst, identical, nan_mismatches = 0.0, True, 0
    for first in range(0, numel, step):
        n = min(step, numel - first)
        raw_a = _read(fa, ta.offset + first * size_a, n * size_a, name)
        raw_b = _read(fb, tb.offset + first * size_b, n * size_b, name)
        out.bytes_read += len(raw_a) + len(raw_b)
        if same_dtype and raw_a == raw_b:
            continue
        va, vb = _values(raw_a, ta.dtype), _values(raw_b, tb.dtype)
        nan_a, nan_b = np.isnan(va), np.isnan(vb)
        nan_mismatches += int(np.count_nonzero(nan_a != nan_b))
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(va - vb)
        diff[nan_a | nan_b] = 0.0
        # inf - inf is nan: equal infinities are equal, opposite ones are infinitely far apart
        diff[np.isnan(diff)] = 0.0
        chunk_worst = float(diff.max()) if diff.size else 0.0
        worst = max(worst, chunk_worst)
        identical = identical and chunk_worst == 0.0 and not bool(np.any(nan_a != nan_b))
    return TensorValues(name, ta.dtype, tb.dtype, ta.shape, worst, identical, nan_mismatches)
