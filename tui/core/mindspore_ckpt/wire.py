"""The wire-format reader: ``read_mindspore`` and ``sniff`` (the package docstring has the format and the
rules). Value headers are read in small blocks around their offsets; ``tensor_content`` is never read
(only the few bytes of known scalars and ``append_dict`` text)."""

from __future__ import annotations

import binascii
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from tui.core.files import open_regular_file
from tui.core.mindspore_ckpt.records import (
    MINDSPORE_TYPES,
    STRING_TYPE,
    MindSporeReport,
    MindSporeTensor,
    summarize,
)
from tui.core.text import quoted, safe_message

ENCRYPTED_MAGIC = b"\xd8\x5e\x3a\x7f"  # MindSpore's cipher-file magic 0x7F3A5ED8, little-endian
CRC_MARK = b"crc_num"
CRC_TRAILER = len(CRC_MARK) + 10

MAX_VALUES = 1_000_000  # values in one file; about 3 s of parsing
MAX_TAG_BYTES = 64 << 10
MAX_TYPE_BYTES = 256
MAX_DIMS = 64
MAX_STRING_BYTES = 4096  # append_dict text read for display
MAX_PROBLEMS = 20  # per kind of problem; the rest are counted in one line
_BLOCK = 16 << 10  # bytes read at a time around value headers
_I64 = 1 << 63

_STRUCT = {
    "F32": "<f",
    "F64": "<d",
    "F16": "<e",
    "I8": "<b",
    "U8": "<B",
    "I16": "<h",
    "U16": "<H",
    "I32": "<i",
    "U32": "<I",
    "I64": "<q",
    "U64": "<Q",
    "BOOL": "<?",
}

SCALAR_NAMES = frozenset({"global_step", "epoch_num", "step_num", "learning_rate", "loss_scale"})


def sniff(head: bytes) -> Literal["mindspore", "encrypted"] | None:
    """What the first bytes of a file say: a MindSpore checkpoint (a ``value`` field whose first field is its
    ``tag``), an encrypted one, or neither (a torch pickle or zip starts with 0x80 or ``PK``)."""
    if head.startswith(ENCRYPTED_MAGIC):
        return "encrypted"
    if len(head) < 3 or head[0] != 0x0A:
        return None
    i = 1
    while i < len(head) and head[i] & 0x80 and i < 11:  # the value's length varint
        i += 1
    if i + 1 >= len(head) or i > 10:
        return None
    return "mindspore" if head[i + 1] == 0x0A else None  # Value.tag: field 1, length-delimited


class _WireError(Exception):
    def __init__(self, message: str, at: int, *, truncated: bool = False) -> None:
        super().__init__(message)
        self.at, self.truncated = at, truncated


class _Window:
    """Bytes of the file around a position, read in blocks: value headers are small and close together."""

    def __init__(self, f: Any, end: int) -> None:
        self.f, self.end = f, end
        self.base, self.buf = 0, b""

    def get(self, pos: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``pos``, fewer only at ``self.end``."""
        n = min(n, self.end - pos)
        if n <= 0:
            return b""
        if not (self.base <= pos and pos + n <= self.base + len(self.buf)):
            self.f.seek(pos)
            self.buf = self.f.read(min(max(n, _BLOCK), self.end - pos))
            self.base = pos
        return self.buf[pos - self.base : pos - self.base + n]

    def varint(self, pos: int, stop: int, what: str) -> tuple[int, int]:
        raw = self.get(pos, min(10, stop - pos))
        value = shift = 0
        for i, b in enumerate(raw):
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value, pos + i + 1
            shift += 7
        if len(raw) < 10:
            raise _WireError(f"{what} cut off", pos, truncated=stop >= self.end)
        raise _WireError(f"{what} is not a varint", pos)


@dataclass
class _Value:
    """What one ``value`` field held, filled as it is parsed (a truncated value keeps what was read)."""

    tag: str | None = None
    dims: list[int] | None = None
    dims_problem: str | None = None
    mindspore_type: str | None = None
    content: tuple[int, int] | None = None  # (file offset, length)
    map_tensor: bool = False


class _Parser:
    def __init__(self, window: _Window, label: str, report: MindSporeReport) -> None:
        self.w, self.label, self.report = window, label, report
        self.by_name: dict[str, MindSporeTensor] = {}
        self.last: MindSporeTensor | None = None
        self.values = 0
        self.bad_sizes: list[str] = []
        self.unknown_types: dict[str, int] = {}
        self.unknown_fields: list[str] = []

    # --- top level ---------------------------------------------------------------------------------------

    def run(self) -> None:
        pos, end = 0, self.w.end
        while pos < end:
            if self.values >= MAX_VALUES:
                self._problem(f"stopped after {MAX_VALUES:,} values at byte {pos}; counts are partial")
                return
            start = pos
            try:
                number, wire, pos = self._key(pos, end, "field key")
                if number != 1 or wire != 2:
                    pos = self._skip(number, wire, pos, end, start, "the checkpoint")
                    continue
                length, pos = self.w.varint(pos, end, "value length")
            except _WireError as e:
                self._stop(e, start)
                return
            if pos + length > end:
                self._truncated(start, pos, length)
                return
            value = _Value()
            try:
                self._value(pos, pos + length, value)
            except _WireError as e:
                self._stop(e, start, value)
                return
            self.values += 1
            self._add(value, start)
            pos += length

    def _stop(self, e: _WireError, start: int, value: _Value | None = None) -> None:
        if self.values == 0 and start == 0 and not e.truncated:
            self.report.format = "not-mindspore"
            self._problem(f"not a MindSpore checkpoint or a torch pickle ({e} at byte {e.at})")
            return
        what = f" ({quoted(value.tag)})" if value is not None and value.tag else ""
        if e.truncated:
            self._problem(
                f"truncated: value #{self.values + 1}{what} at byte {start} ends early ({e} at byte {e.at}); "
                f"the {self.values} values before it are intact"
            )
        else:
            self._problem(f"corrupt: value #{self.values + 1}{what} at byte {start}: {e} at byte {e.at}")

    def _truncated(self, start: int, body: int, length: int) -> None:
        value = _Value()
        try:
            self._value(body, self.w.end, value)
        except _WireError:
            pass
        what = f" ({quoted(value.tag)})" if value.tag else ""
        self._problem(
            f"truncated: value #{self.values + 1}{what} at byte {start} runs past the end of the file "
            f"(needs {body + length - start:,} bytes, {self.w.end - start:,} remain); "
            f"the {self.values} values before it are intact"
        )

    def _skip(self, number: int, wire: int, pos: int, stop: int, start: int, where: str) -> int:
        """Skip a field this reader does not know (a newer format); note it once per place."""
        if wire == 0:
            _, pos = self.w.varint(pos, stop, f"field {number}")
        elif wire == 1 or wire == 5:
            pos += 8 if wire == 1 else 4
            if pos > stop:
                raise _WireError(f"field {number} cut off", start, truncated=stop >= self.w.end)
        elif wire == 2:
            length, pos = self.w.varint(pos, stop, f"field {number} length")
            pos += length
            if pos > stop:
                raise _WireError(f"field {number} runs past its message", start, truncated=stop >= self.w.end)
        else:
            raise _WireError(f"field key {number}:{wire} is not protobuf", start)
        if len(self.unknown_fields) < 5:
            self.unknown_fields.append(f"field {number} of {where} at byte {start}")
        return pos

    # --- one value -----------------------------------------------------------------------------------------

    def _fields(
        self, pos: int, stop: int, where: str, numbers: tuple[int, ...]
    ) -> Iterator[tuple[int, int, int, int]]:
        """(number, field start, body start, body length) of each length-delimited field ``numbers`` names
        between ``pos`` and ``stop``; other fields are skipped (and noted as unknown)."""
        while pos < stop:
            start = pos
            number, wire, pos = self._key(pos, stop, "field key")
            if wire != 2 or number not in numbers:
                pos = self._skip(number, wire, pos, stop, start, where)
                continue
            length, pos = self.w.varint(pos, stop, "field length")
            yield number, start, pos, length
            pos += length

    def _key(self, pos: int, stop: int, what: str) -> tuple[int, int, int]:
        """(field number, wire type, offset after the key)."""
        key, pos = self.w.varint(pos, stop, what)
        return key >> 3, key & 7, pos

    def _value(self, pos: int, stop: int, value: _Value) -> None:
        for number, start, body, length in self._fields(pos, stop, "a value", (1, 2, 3)):
            end = body + length
            if number == 1:
                if length > MAX_TAG_BYTES:
                    raise _WireError(f"tag of {length:,} bytes (over {MAX_TAG_BYTES >> 10} KiB)", start)
                if end > stop:
                    raise _WireError("tag runs past its value", start, truncated=stop >= self.w.end)
                value.tag = self.w.get(body, length).decode("utf-8", "replace")
            elif number == 2:
                self._tensor(body, min(end, stop), value, end > stop)
            else:
                value.map_tensor = True
                self._map_tensor(body, min(end, stop), value)
            if end > stop:
                raise _WireError("field runs past its value", start, truncated=stop >= self.w.end)

    def _tensor(self, pos: int, stop: int, value: _Value, cut: bool) -> None:
        dims: list[int] = []
        while pos < stop:
            start = pos
            number, wire, pos = self._key(pos, stop, "tensor field key")
            if number == 1 and wire == 0:
                d, pos = self.w.varint(pos, stop, "dim")
                dims.append(d)
            elif number == 1 and wire == 2:  # packed dims
                length, pos = self.w.varint(pos, stop, "dims length")
                end = pos + length
                while pos < min(end, stop):
                    d, pos = self.w.varint(pos, min(end, stop), "dim")
                    dims.append(d)
                pos = end
            elif number in (2, 3) and wire == 2:
                length, pos = self.w.varint(pos, stop, "tensor field length")
                if number == 2:
                    raw = self.w.get(pos, min(length, MAX_TYPE_BYTES))
                    value.mindspore_type = raw.decode("utf-8", "replace")
                else:
                    value.content = (pos, length)  # never read: skipped by its length
                pos += length
            else:
                pos = self._skip(number, wire, pos, stop, start, "a tensor")
            if len(dims) > MAX_DIMS:
                value.dims_problem = f"more than {MAX_DIMS} dims"
                dims = dims[:MAX_DIMS]
        if pos > stop and not cut:
            raise _WireError("tensor field runs past its tensor", stop)
        value.dims, problem = _checked_dims(dims)
        value.dims_problem = value.dims_problem or problem

    def _map_tensor(self, pos: int, stop: int, value: _Value) -> None:
        """A MapParameter (keys, values, status tensors): counted as one tensor shaped like its values."""
        parts: list[_Value] = []
        for _, _, body, length in self._fields(pos, stop, "a map tensor", (1,)):
            part = _Value()
            self._tensor(body, min(body + length, stop), part, body + length > stop)
            parts.append(part)
        chosen = parts[1] if len(parts) > 1 else parts[0] if parts else _Value()
        value.dims, value.dims_problem = chosen.dims, chosen.dims_problem
        value.mindspore_type = chosen.mindspore_type
        value.content = chosen.content

    # --- joining slices into tensors -------------------------------------------------------------------

    def _add(self, value: _Value, at: int) -> None:
        if value.tag is None:
            self._problem(f"value #{self.values} at byte {at} has no tag (name)")
            return
        if value.mindspore_type is None or value.content is None:
            missing = "tensor_type" if value.mindspore_type is None else "tensor_content"
            self._problem(f"value {quoted(value.tag)} at byte {at} has no {missing}")
            return
        if value.mindspore_type == STRING_TYPE:
            if len(self.report.strings) < 100:
                offset, length = value.content
                raw = self.w.get(offset, min(length, MAX_STRING_BYTES))
                text = raw[: len(raw) - len(raw) % 4].decode("utf-32-le", "replace").rstrip("\x00")
                self.report.strings[value.tag] = text[:200]
            self.last = None
            return
        dims = None if value.dims_problem else tuple(value.dims or ())
        if dims == (0,):
            dims = ()  # MindSpore's loader reads dims [0] as a scalar
        last = self.last
        if last is not None and last.name == value.tag and not value.map_tensor:  # the next slice
            if value.mindspore_type != last.mindspore_type or dims != last.shape:
                self._problem(f"slices of {quoted(last.name)} disagree on type or dims at byte {at}")
            last.slices.append(value.content)
            last.nbytes += value.content[1]
            return
        earlier = self.by_name.get(value.tag)
        if earlier is not None:
            self._problem(
                f"{quoted(value.tag)} is written twice (bytes {earlier.offset} and {at}); MindSpore loads the later one"
            )
            self.report.entries.remove(earlier)
        if value.dims_problem:
            self._problem(f"tensor {quoted(value.tag)} at byte {at}: {value.dims_problem}")
        known = MINDSPORE_TYPES.get(value.mindspore_type)
        if known is None:
            self.unknown_types[value.mindspore_type] = self.unknown_types.get(value.mindspore_type, 0) + 1
        tensor = MindSporeTensor(
            name=value.tag,
            mindspore_type=value.mindspore_type,
            dtype=known[0] if known else value.mindspore_type[:40],
            shape=dims,
            offset=at,
            nbytes=value.content[1],
            slices=[value.content],
        )
        self.report.entries.append(tensor)
        self.by_name[value.tag] = tensor
        self.last = tensor

    def _problem(self, text: str) -> None:
        self.report.problems.append(f"{self.label}: {text}")


def _checked_dims(dims: list[int]) -> tuple[list[int], str | None]:
    """int64 dims as written (varints over 2**63 are negative); a problem when no tensor has them."""
    signed = [d - (1 << 64) if d >= _I64 else d for d in dims]
    if any(d < 0 for d in signed):
        return signed, f"negative dims {signed[:8]}"
    n = 1
    for d in signed:
        n *= d
        if n >= _I64:
            return signed, f"dims {signed[:8]} overflow int64 numel"
    return signed, None


def read_mindspore(path: str | os.PathLike, *, verify_crc: bool = False) -> MindSporeReport:
    """Describe the MindSpore checkpoint at ``path`` (module docstring). Never raises."""
    name = os.fsdecode(path)
    label = os.path.basename(name) or name
    try:
        report = _read(name, label, verify_crc)
    except Exception as e:  # the contract is "never raises"; a last line of defence
        report = MindSporeReport(
            format="not-mindspore", problems=[f"{label}: read failed ({type(e).__name__}: {e})"]
        )
    report.problems = [safe_message(p) for p in report.problems]
    return report


def _read(path: str, label: str, verify_crc: bool) -> MindSporeReport:
    report = MindSporeReport(format="mindspore")
    try:
        fd, size = open_regular_file(path)
    except ValueError as e:
        report.problems.append(f"{label}: {e}")
        return report
    except OSError as e:
        report.problems.append(f"{label}: cannot open ({e.strerror or e})")
        return report
    report.file_size = size
    with os.fdopen(fd, "rb") as f:
        if size == 0:
            report.problems.append(f"{label}: zero-byte file")
            return report
        head = f.read(16)
        if head.startswith(ENCRYPTED_MAGIC):
            report.format = "encrypted"
            report.unsupported = (
                "encrypted MindSpore checkpoint (save_checkpoint enc_key): its tensors cannot be read "
                "without the key, so nothing in it was checked"
            )
            return report
        end = size
        if size >= CRC_TRAILER:
            f.seek(size - CRC_TRAILER)
            tail = f.read(CRC_TRAILER)
            if tail.startswith(CRC_MARK):
                end = size - CRC_TRAILER
                report.crc = int.from_bytes(tail[len(CRC_MARK) :], "big")
        parser = _Parser(_Window(f, end), label, report)
        parser.run()
        if report.format == "not-mindspore":
            return report
        _finish(report, parser, label)
        _read_scalars(report, parser.w)
        if verify_crc and report.crc is not None:
            report.crc_ok = _crc(f, end) == report.crc
            if not report.crc_ok:
                report.problems.append(
                    f"{label}: CRC32 does not match the stored crc_num: the file is damaged"
                )
    return report


def _finish(report: MindSporeReport, parser: _Parser, label: str) -> None:
    bad: list[str] = []
    for t in report.entries:
        want = t.expected_nbytes
        if want is not None and t.nbytes != want:
            shape = list(t.shape) if t.shape is not None else "?"
            how = "cut short" if t.nbytes < want else "longer than its dims"
            bad.append(
                f"{quoted(t.name)} ({t.dtype} {shape}) at byte {t.offset} holds {t.nbytes:,} of "
                f"{want:,} bytes: {how}"
            )
    if bad:
        shown = bad[:MAX_PROBLEMS]
        report.problems.extend(f"{label}: tensor {b}" for b in shown)
        if len(bad) > len(shown):
            report.problems.append(f"{label}: and {len(bad) - len(shown)} more tensors of the wrong size")
    for mtype, count in list(parser.unknown_types.items())[:MAX_PROBLEMS]:
        report.problems.append(
            f"{label}: {count} tensor(s) of unknown tensor_type {quoted(mtype, 40)} (MindSpore cannot load them)"
        )
    if parser.unknown_fields:
        report.unsupported = (
            "holds protobuf fields this reader does not know ("
            + ", ".join(parser.unknown_fields)
            + "): a newer MindSpore format? counts may be incomplete"
        )
    summarize(report)


def _read_scalars(report: MindSporeReport, window: _Window) -> None:
    for t in report.entries:
        fmt = _STRUCT.get(t.dtype) if t.dtype != "BF16" else "BF16"
        if t.name not in SCALAR_NAMES or fmt is None or t.nbytes > 16 or t.nbytes != t.expected_nbytes:
            continue
        offset, length = t.slices[0]
        raw = window.get(offset, length)
        if fmt == "BF16":
            value: Any = struct.unpack("<f", b"\x00\x00" + raw[:2])[0] if len(raw) >= 2 else None
        else:
            size = struct.calcsize(fmt)
            value = struct.unpack(fmt, raw[:size])[0] if len(raw) >= size else None
        if value is not None and value == value:  # not NaN
            report.scalars[t.name] = value


def _crc(f: Any, end: int) -> int:
    f.seek(0)
    crc, left = 0, end
    while left > 0:
        chunk = f.read(min(left, 8 << 20))
        if not chunk:
            break
        crc = binascii.crc32(chunk, crc)
        left -= len(chunk)
    return crc
