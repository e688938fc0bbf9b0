"""MindSpore ``.ckpt`` files, read from their protobuf wire format: bounded, without MindSpore, and never
reading ``tensor_content`` (each tensor's bytes are skipped by their length).

API::

    sniff(head: bytes) -> "mindspore" | "encrypted" | None      # from a file's first 16 bytes
    read_mindspore(path, *, verify_crc=False) -> MindSporeReport  # never raises
    @dataclass MindSporeTensor(name, mindspore_type, dtype, dims, offset, nbytes, slices, role)
    @dataclass MindSporeReport(format, file_size, entries, tensors, parameters, dtypes, optimizer_tensors,
                               optimizer_parameters, modules, module_prefix, largest, scalars, strings,
                               crc, crc_ok, problems, unsupported)
        .network() / .tensor_table() / .inspect_json()

The format (MindSpore 2.x ``checkpoint.proto``)::

    message Checkpoint {
      message Value { required string tag = 1;
                      oneof value { TensorProto tensor = 2; MapTensorProto maptensor = 3; } }
      repeated Value value = 1; }
    message TensorProto { repeated int64 dims = 1; required string tensor_type = 2;
                          required bytes tensor_content = 3; }
    message MapTensorProto { repeated TensorProto tensor = 1; }

``save_checkpoint`` writes one ``Checkpoint`` message per parameter slice and concatenates them (protobuf
merges repeated fields), so a file is a run of ``value`` fields; a tensor over 512 MiB is split into
consecutive values with the same tag, which the loader joins. ``crc_check=True`` appends ``b"crc_num"``
and a 10-byte big-endian CRC32 of everything before it. ``enc_key`` encrypts the whole file, which then
starts with the bytes ``D8 5E 3A 7F``: reported as unsupported (``unsupported``), never as broken.
``append_dict`` strings have ``tensor_type "str"`` and UTF-32 content; ``dims == [0]`` is a scalar, as
MindSpore's loader reads it.

What is checked (each a ``problems`` line naming the file and the byte offset): a value that runs past
the end of the file (truncated; the tensors before it are intact), ``tensor_content`` shorter or longer
than dims x itemsize, dims that are negative, overflow int64 numel or number more than 64, a
``tensor_type`` MindSpore does not know, a tag written twice apart (the later one wins on load), a value
without tag, type or content, field keys that are not protobuf (corrupt bytes), a CRC that does not match
(only with ``verify_crc``: it reads the whole file).

Network and optimizer: a tensor is optimizer state when its name is a known training scalar
(``global_step``, ``learning_rate``, ``beta1_power``, ``momentum``, ``epoch_num``, ...) or
``<slot>.<name of another tensor>`` (``moment1.fc.weight`` beside ``fc.weight``) or starts with a known
slot (``moments.``, ``accum.``, ``moment1.``, ``mean_square.``, ...). ``tensors``/``parameters``/``dtypes``
count the network only (what a ``model.safetensors`` export holds); the optimizer is counted apart.
``scalars`` holds the values of small known scalars (``global_step``, ``epoch_num``, ``step_num``,
``learning_rate``), read from at most 16 bytes each.
"""

from __future__ import annotations

import binascii
import os
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from tui.core.files import open_regular_file
from tui.core.text import quoted, safe_message
from tui.core.weights import largest_tensors, module_counts

__all__ = ["MindSporeReport", "MindSporeTensor", "read_mindspore", "sniff"]

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

# MindSpore tensor_type -> (dtype name we report, the safetensors name; bits per element or None).
MINDSPORE_TYPES: dict[str, tuple[str, int | None]] = {
    "Float32": ("F32", 32),
    "Float16": ("F16", 16),
    "BFloat16": ("BF16", 16),
    "Float64": ("F64", 64),
    "Int8": ("I8", 8),
    "UInt8": ("U8", 8),
    "Int16": ("I16", 16),
    "UInt16": ("U16", 16),
    "Int32": ("I32", 32),
    "UInt32": ("U32", 32),
    "Int64": ("I64", 64),
    "UInt64": ("U64", 64),
    "Bool": ("BOOL", 8),
    "Int4": ("qint4x2", None),  # packed; MindSpore's layout is not checked
}
STRING_TYPE = "str"
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

# Names MindSpore optimizers and training wrappers save beside the network's parameters.
OPTIMIZER_SCALARS = frozenset(
    "global_step learning_rate beta1_power beta2_power momentum loss_scale scale_sense weight_decay "
    "epoch_num step_num current_iterator_step last_overflow_iterator_step".split()
)
OPTIMIZER_SLOTS = frozenset(
    "moment1 moment2 moments moment accum mean_square mean_grad vhat exp_avg exp_avg_sq adam_m adam_v "
    "linear".split()
)
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


@dataclass
class MindSporeTensor:
    name: str
    mindspore_type: str  # as written ("Float32")
    dtype: str  # the safetensors name ("F32"); MindSpore's own when safetensors has none
    dims: tuple[int, ...] | None  # None: unusable dims (a problem says why)
    offset: int  # file offset of the first value holding it
    nbytes: int = 0  # tensor_content bytes present, all slices together
    slices: list[tuple[int, int]] = field(default_factory=list)  # (file offset, length) of each content
    role: Literal["network", "optimizer"] = "network"

    @property
    def numel(self) -> int | None:
        if self.dims is None:
            return None
        n = 1
        for d in self.dims:
            n *= d
        return n

    @property
    def expected_nbytes(self) -> int | None:
        bits = MINDSPORE_TYPES.get(self.mindspore_type, ("", None))[1]
        numel = self.numel
        if bits is None or numel is None or (numel * bits) % 8:
            return None
        return numel * bits // 8


@dataclass
class MindSporeReport:
    source: ClassVar[Literal["mindspore"]] = "mindspore"  # vs WeightsSummary.source / PickleReport.source
    format: Literal["mindspore", "encrypted", "not-mindspore"]
    file_size: int = 0
    entries: list[MindSporeTensor] = field(default_factory=list)  # every tensor, file order
    tensors: int = 0  # network tensors
    parameters: int = 0  # network parameters (numel)
    dtypes: dict[str, int] = field(default_factory=dict)  # network dtype -> parameters
    optimizer_tensors: int = 0
    optimizer_parameters: int = 0
    modules: dict[str, int] = field(default_factory=dict)
    module_prefix: str = ""
    largest: list[dict[str, Any]] = field(default_factory=list)
    bytes: int = 0  # network tensor_content bytes
    scalars: dict[str, float | int] = field(default_factory=dict)
    strings: dict[str, str] = field(default_factory=dict)
    crc: int | None = None  # stored by crc_check=True
    crc_ok: bool | None = None  # None: not verified
    problems: list[str] = field(default_factory=list)
    unsupported: str | None = None  # why the contents could not be read (encrypted, unknown fields)

    def network(self) -> list[MindSporeTensor]:
        return [t for t in self.entries if t.role == "network"]

    def tensor_table(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """name -> (dtype, shape) of the network tensors (what a diff compares)."""
        return {t.name: (t.dtype, t.dims) for t in self.network() if t.dims is not None}

    def inspect_json(self) -> dict[str, Any]:
        """What ``inspect --json`` prints under "weights" for a MindSpore checkpoint."""
        out = {k: v for k, v in vars(self).items() if k != "entries"}
        out["format"] = self.format
        out["entries"] = [
            {
                "name": t.name,
                "dtype": t.dtype,
                "shape": list(t.dims) if t.dims is not None else None,
                "role": t.role,
                "bytes": t.nbytes,
            }
            for t in self.entries[:200]
        ]
        out["largest"] = [dict(t) for t in self.largest]
        return out


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
                key, pos = self.w.varint(pos, end, "field key")
                number, wire = key >> 3, key & 7
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

    def _value(self, pos: int, stop: int, value: _Value) -> None:
        while pos < stop:
            start = pos
            key, pos = self.w.varint(pos, stop, "field key")
            number, wire = key >> 3, key & 7
            if wire != 2 or number not in (1, 2, 3):
                pos = self._skip(number, wire, pos, stop, start, "a value")
                continue
            length, pos = self.w.varint(pos, stop, "field length")
            end = pos + length
            if number == 1:
                if length > MAX_TAG_BYTES:
                    raise _WireError(f"tag of {length:,} bytes (over {MAX_TAG_BYTES >> 10} KiB)", start)
                if end > stop:
                    raise _WireError("tag runs past its value", start, truncated=stop >= self.w.end)
                value.tag = self.w.get(pos, length).decode("utf-8", "replace")
            elif number == 2:
                self._tensor(pos, min(end, stop), value, end > stop)
            else:
                value.map_tensor = True
                self._map_tensor(pos, min(end, stop), value)
            if end > stop:
                raise _WireError("field runs past its value", start, truncated=stop >= self.w.end)
            pos = end

    def _tensor(self, pos: int, stop: int, value: _Value, cut: bool) -> None:
        dims: list[int] = []
        while pos < stop:
            start = pos
            key, pos = self.w.varint(pos, stop, "tensor field key")
            number, wire = key >> 3, key & 7
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
        while pos < stop:
            start = pos
            key, pos = self.w.varint(pos, stop, "map field key")
            number, wire = key >> 3, key & 7
            if number != 1 or wire != 2:
                pos = self._skip(number, wire, pos, stop, start, "a map tensor")
                continue
            length, pos = self.w.varint(pos, stop, "map tensor length")
            part = _Value()
            self._tensor(pos, min(pos + length, stop), part, pos + length > stop)
            parts.append(part)
            pos += length
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
            if value.mindspore_type != last.mindspore_type or dims != last.dims:
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
            dims=dims,
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
    names = {t.name for t in report.entries}
    bad: list[str] = []
    for t in report.entries:
        head, _, rest = t.name.partition(".")
        if t.name in OPTIMIZER_SCALARS or (rest and (head in OPTIMIZER_SLOTS or rest in names)):
            t.role = "optimizer"
        want = t.expected_nbytes
        if want is not None and t.nbytes != want:
            shape = list(t.dims) if t.dims is not None else "?"
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
    network = [t for t in report.entries if t.role == "network"]
    counted = [(t, t.numel) for t in network if t.numel is not None]
    report.tensors = len(network)
    report.parameters = sum(n for _, n in counted)
    report.bytes = sum(t.nbytes for t in network)
    dtypes: dict[str, int] = {}
    for t, n in counted:
        dtypes[t.dtype] = dtypes.get(t.dtype, 0) + n
    report.dtypes = dict(sorted(dtypes.items(), key=lambda kv: (-kv[1], kv[0])))
    optimizer = [t for t in report.entries if t.role == "optimizer"]
    report.optimizer_tensors = len(optimizer)
    report.optimizer_parameters = sum(t.numel or 0 for t in optimizer)
    report.module_prefix, report.modules = module_counts([t.name for t, _ in counted], [n for _, n in counted])
    report.largest = largest_tensors([(t.name, t.dtype, t.dims, n) for t, n in counted])  # type: ignore[misc]


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
