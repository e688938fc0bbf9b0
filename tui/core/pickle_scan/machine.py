"""The symbolic pickle machine: replays opcodes over inert placeholders, never imports or calls anything.

A ``GLOBAL`` becomes a ``GlobalRef`` (a name, judged by ``policy.classify_global``), a ``REDUCE`` a ``Call``
record ("call this with these arguments", never performed), a persistent id a ``Persistent``. Tensor
rebuild calls are recognised as they are built, so their dtype and shape are counted without a second
pass. Limits (``MAX_OPCODES``, ``MAX_MARK_DEPTH``, ``MAX_DIMS``) keep hostile files cheap; hitting one
raises ``ScanStop(limit=True)``.

Speed: ``Machine.run`` is the hot loop (millions of opcodes per file). It decodes the common binary
arguments inline and applies the frequent opcodes inline, most frequent first; rare opcodes and text
arguments go through ``_apply_rare`` / ``_read_slow``, which cost a call each.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import pickletools
import re
import struct

from tui.core.pickle_scan.allowlist import REBUILT
from tui.core.pickle_scan.policy import classify_global, may_call
from tui.core.pickle_scan.torch_names import STORAGE_TYPES, TORCH_DTYPE_NAMES

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

MAX_OPCODES = 2_000_000  # about 1 s
MAX_MARK_DEPTH = 100_000
MAX_DIMS = 64
TENSOR_REBUILDERS = frozenset(
    {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_qtensor"}
)
# torch.load's own renames (serialization.py ``load_module_mapping``)
_TORCH_MODULE_MAPPING = {"torch.tensor": "torch._tensor"}
_OBJECT_BASES = frozenset({"builtins.object", "builtins.dict", "builtins.list", "builtins.set"})
# Top-level keys that tell a Lightning checkpoint, remembered even when the root cannot be rebuilt.
MARKERS = frozenset(
    {"pytorch-lightning_version", "state_dict", "callbacks", "optimizer_states", "loops", "lr_schedulers"}
)


class ScanStop(Exception):
    """The pickle cannot be replayed further; the message is the reason."""

    def __init__(self, message: str, *, truncated: bool = False, limit: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated  # ran off the end of the bytes we have
        self.limit = limit  # one of our limits, not a fault of the file

    def describe(self, label: str, what: str) -> str:
        if self.limit:
            return f"{label}: scan of {what} stopped at a limit ({self})"
        return f"{label}: {what} is corrupt or truncated ({self})"


# --- placeholders -----------------------------------------------------------------------------------------


class GlobalRef:
    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


class Call:
    """``func(*args)``, never performed; ``pairs`` collects SETITEMs, ``items`` APPENDs, ``state`` BUILD."""

    __slots__ = ("func", "args", "pairs", "items", "state", "tensor")

    def __init__(self, func: Any, args: Any) -> None:
        self.func, self.args = func, args
        self.pairs: list | None = None
        self.items: list | None = None
        self.state: Any = None
        self.tensor: tuple[str, tuple[int, ...] | None] | None = None  # (dtype, shape) of a tensor rebuild


class DictNode:
    __slots__ = ("pairs",)

    def __init__(self, pairs: list | None = None) -> None:
        self.pairs = pairs if pairs is not None else []


class SetNode:
    __slots__ = ("items",)

    def __init__(self, items: list | None = None) -> None:
        self.items = items if items is not None else []


class Persistent:
    __slots__ = ("pid",)

    def __init__(self, pid: Any) -> None:
        self.pid = pid


class Buffer:
    __slots__ = ()


CONTAINERS = (list, tuple, DictNode, Call, SetNode)


def is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < (1 << 63)


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _shape(v: Any) -> tuple[int, ...] | None:
    """A plausible tensor shape (<= 64 dims, numel < 2**63), else None. Bounding it here keeps a hostile
    shape of a million huge dimensions from costing a quadratic big-integer product."""
    if isinstance(v, Call) and isinstance(v.func, GlobalRef) and v.func.name == "Size" and v.args:
        v = v.args[0]  # torch.Size((2, 3))
    if not isinstance(v, (tuple, list)) or len(v) > MAX_DIMS:
        return None
    n = 1
    for d in v:
        if not is_count(d):
            return None
        n *= d
        if n >= 1 << 63:
            return None
    return tuple(v)


def _add_items(stack: list, items: list, *, pairs: bool) -> None:
    """SETITEM(S) / APPEND(S) / ADDITEMS into the container on top of the stack; other targets ignore them."""
    if not stack:
        raise ScanStop("no container on the stack")
    target = stack[-1]
    if isinstance(target, Call):
        if pairs:
            if target.pairs is None:
                target.pairs = []
            target.pairs.extend(items)
        else:
            if target.items is None:
                target.items = []
            target.items.extend(items)
    elif pairs and isinstance(target, DictNode):
        target.pairs.extend(items)
    elif not pairs and isinstance(target, list):
        target.extend(items)
    elif not pairs and isinstance(target, SetNode):
        target.items.extend(items)


# --- opcode table -----------------------------------------------------------------------------------------

# How the arguments of the common binary opcodes are decoded inline: "u" (an unsigned little-endian int
# of ``size`` bytes), "s" (a signed one), "long1" (a length byte, then a signed int of that many bytes),
# "f8" (a big-endian double), "str"/"bytes" (a ``size``-byte length, then that many bytes): exactly what
# pickletools' readers return for them. Every other opcode with an argument is "slow": pickletools' own reader.
_FAST_ARGS: dict[str, tuple[str, int]] = {
    **dict.fromkeys(("BININT1", "BINGET", "BINPUT", "PROTO", "EXT1"), ("u", 1)),
    **dict.fromkeys(("BININT2", "EXT2"), ("u", 2)),
    **dict.fromkeys(("LONG_BINGET", "LONG_BINPUT"), ("u", 4)),
    "BININT": ("s", 4),  # signed
    "LONG1": ("long1", 1),  # a length byte, then a signed little-endian int (rng_state.pth: 300 of them)
    "BINFLOAT": ("f8", 8),  # big-endian IEEE double
    "FRAME": ("u", 8),
    **{
        name: ("str", size) for name, size in (("SHORT_BINUNICODE", 1), ("BINUNICODE", 4), ("BINUNICODE8", 8))
    },
    **{name: ("bytes", size) for name, size in (("SHORT_BINBYTES", 1), ("BINBYTES", 4), ("BINBYTES8", 8))},
}
_DOUBLE = struct.Struct(">d")
# BININT1, BININT2, BININT, LONG1: replayed a run at a time (Machine._ints)
_INT_CODES = frozenset(b"KMJ\x8a")
_INT4 = struct.Struct("<i").unpack_from
# A run of whole integer opcodes (LONG1 of up to 8 bytes; longer ones and a cut-off tail are left to the
# one-by-one loop), at most _RUN_CHUNK of them: a bounded repeat keeps the regex engine's memory bounded.
# Nothing but ints, so the C unpickler decodes a chunk with nothing to call.
_RUN_CHUNK = 4096
_INT_RUN = re.compile(
    rb"(?:K.|M..|J....|\x8a(?:\x00|\x01.|\x02..|\x03...|\x04....|\x05.{5}|\x06.{6}|\x07.{7}|\x08.{8}))"
    rb"{1,%d}" % _RUN_CHUNK,
    re.DOTALL,
)
_RUN_MIN = 8  # shorter runs (shapes, strides) cost less one by one than a regex match and an unpickling
# opcode byte -> (name, argument kind, size of the fixed part, pickletools opcode)
_OPS: dict[int, tuple[str, str | None, int, Any]] = {
    op.code.encode("latin-1")[0]: (
        op.name,
        *(_FAST_ARGS.get(op.name) or (("slow", 0) if op.arg else (None, 0))),
        op,
    )
    for op in pickletools.opcodes
}
_CONSTANT_OPS = frozenset(
    "INT BININT BININT1 BININT2 LONG LONG1 LONG4 STRING BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES "
    "BINBYTES8 BYTEARRAY8 UNICODE SHORT_BINUNICODE BINUNICODE BINUNICODE8 FLOAT BINFLOAT".split()
)


def _pop(stack: list) -> Any:
    if not stack:
        raise ScanStop("stack underflow")
    return stack.pop()


def _pop_mark(stack: list, metastack: list[list]) -> tuple[list, list]:
    """(items since the last MARK, the stack below that MARK)."""
    if not metastack:
        raise ScanStop("MARK missing")
    return stack, metastack.pop()


class Machine:
    """Replays pickle opcodes over placeholders. Shared across the pickles of one file (budget, tallies)."""

    def __init__(self) -> None:
        self.opcodes = 0
        self.globals: dict[str, str] = {}  # "module.name" -> classify_global verdict, in first-seen order
        self.tensors: list[Call] = []
        self.storages: dict[str, tuple[str, int]] = {}  # key -> (dtype, bytes)
        self.markers: set[str] = set()
        self.proto = 0  # of the pickle being replayed: Python maps py2 names when it is < 3
        # Where each BINFLOAT's 8 operand bytes start: no float value ever decides a verdict, a count or
        # a name (see formats.FloatTemplates), so pickles that differ only there replay alike.
        self.float_operands: list[int] = []
        # (root, what report._walk found under it): a shared replay's graph is walked once per process
        self.walked: tuple[Any, dict[str, Any]] | None = None

    # --- what a placeholder records -----------------------------------------------------------------------

    def _global(self, module: Any, name: Any) -> GlobalRef:
        if not isinstance(module, str) or not isinstance(name, str):
            module, name = "<non-string>", f"<{type(module).__name__}, {type(name).__name__}>"
            verdict = "unsafe"
        else:
            module, name = _as_imported(module, name, self.proto)
            verdict = classify_global(module, name)
            module, name = module[:200], name[:200]  # for display; judged on the full text above
        self._record(f"{module}.{name}", verdict)
        return GlobalRef(module, name)

    def _record(self, key: str, verdict: str) -> None:
        # Bounded, but a flood of harmless names must not hide a harmful one behind the bound.
        if key not in self.globals and len(self.globals) < (10_000 if verdict == "ok" else 100_000):
            self.globals[key] = verdict

    def _check_call(self, func: Any, args: Any) -> None:
        """A call (REDUCE, INST, OBJ) of something that may only be rebuilt, or of a computed object (the
        result of another call, a persistent id: reached through ``getattr`` or ``__call__``), is flagged.
        ``copyreg._reconstructor(cls, base, state)`` runs ``base.__init__``: its base must be ``object``."""
        if not isinstance(func, GlobalRef):
            self._record(f"<call of a computed {_kind_of(func)}>", "unsafe")
            return
        full = f"{func.module}.{func.name}"
        if not may_call(full) and full in REBUILT:
            self._record(f"{full}()", "called")
        if full == "copyreg._reconstructor" and isinstance(args, tuple) and len(args) >= 2:
            base = args[1]
            name = f"{base.module}.{base.name}" if isinstance(base, GlobalRef) else None
            if name not in _OBJECT_BASES:
                self._record(f"{name or '<computed base>'}() via copyreg._reconstructor", "called")

    def _persistent(self, pid: Any) -> Persistent:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            stype, key, count = pid[1], pid[2], pid[4]
            if isinstance(key, str) and isinstance(stype, GlobalRef) and is_count(count):
                dtype, size = STORAGE_TYPES.get(stype.name, ("?", 1))
                if key not in self.storages:
                    self.storages[key] = (dtype, count * size)
        return Persistent(pid)

    def _call(self, func: Any, args: Any, *, new: bool = False) -> Call:
        """``func(*args)``; ``new``: NEWOBJ (``cls.__new__(cls, *args)``, no constructor runs)."""
        if not new:
            self._check_call(func, args)
        call = Call(func, args)
        if not (isinstance(func, GlobalRef) and isinstance(args, tuple)):
            return call
        inner, inner_args = func, args
        if func.name == "_rebuild_from_type_v2" and len(args) >= 3 and isinstance(args[0], GlobalRef):
            inner, inner_args = args[0], args[2]  # tensor subclass: (rebuild_fn, type, rebuild_args, state)
            self._check_call(inner, inner_args)  # torch calls rebuild_fn(*rebuild_args)
        if inner.module != "torch._utils" or not isinstance(inner_args, tuple):
            return call
        if inner.name in TENSOR_REBUILDERS and len(inner_args) >= 3:
            call.tensor = (self._tensor_dtype(inner.name, inner_args), _shape(inner_args[2]))
            self.tensors.append(call)
        elif inner.name == "_rebuild_meta_tensor_no_storage" and len(inner_args) >= 2:
            dt = inner_args[0]
            dtype = TORCH_DTYPE_NAMES.get(dt.name, dt.name) if isinstance(dt, GlobalRef) else "?"
            call.tensor = (dtype, _shape(inner_args[1]))
            self.tensors.append(call)
        return call

    @staticmethod
    def _tensor_dtype(rebuilder: str, args: tuple) -> str:
        if rebuilder == "_rebuild_tensor_v3" and len(args) >= 7 and isinstance(args[6], GlobalRef):
            return TORCH_DTYPE_NAMES.get(args[6].name, args[6].name)
        storage = args[0]
        if isinstance(storage, Persistent) and isinstance(storage.pid, tuple) and len(storage.pid) >= 2:
            stype = storage.pid[1]
            if isinstance(stype, GlobalRef):
                return STORAGE_TYPES.get(stype.name, (stype.name, 1))[0]
        return "?"

    # --- the replay ---------------------------------------------------------------------------------------

    def run(self, data: bytes, pos: int) -> tuple[Any, int]:
        """Replay the pickle starting at ``data[pos]`` up to its STOP: (root object, offset after STOP).

        Raises ScanStop, also for anything the replay trips over (bad UTF-8, an int text over the digit
        limit, MemoryError), so a hostile file is a problem line, never a crash.
        """
        self.proto = 0
        try:
            return self._run(data, pos)
        except ScanStop:
            raise
        except Exception as e:
            raise ScanStop(f"{type(e).__name__}: {str(e)[:160]}") from None

    def _run(self, data: bytes, pos: int) -> tuple[Any, int]:
        stack: list = []
        metastack: list[list] = []
        memo: dict[int, Any] = {}
        n = len(data)
        reader: io.BytesIO | None = None  # for pickletools' argument readers, made on first use
        i = pos
        while True:
            if i >= n:
                raise ScanStop("no STOP opcode (truncated)", truncated=True)
            code = data[i]
            spec = _OPS.get(code)
            if spec is None:
                raise ScanStop(f"unknown opcode {bytes([code])!r} at byte {i}")
            name, kind, size, op = spec
            i += 1
            self.opcodes += 1
            if self.opcodes > MAX_OPCODES:
                raise ScanStop(f"after {MAX_OPCODES:,} opcodes; counts are partial", limit=True)
            # -- the argument
            if kind is None:
                arg = None
            elif kind == "u":
                if i + size > n:
                    raise ScanStop(f"{name} argument cut off", truncated=True)
                arg = int.from_bytes(data[i : i + size], "little")
                i += size
            elif kind == "str" or kind == "bytes":
                if i + size > n:
                    raise ScanStop(f"{name} length cut off", truncated=True)
                length = int.from_bytes(data[i : i + size], "little")
                i += size
                if i + length > n:
                    raise ScanStop(f"{name} of {length} bytes runs past the end", truncated=True)
                raw = data[i : i + length]
                i += length
                arg = raw.decode("utf-8", "surrogatepass") if kind == "str" else raw
            elif kind == "s" or kind == "f8":
                if i + size > n:
                    raise ScanStop(f"{name} argument cut off", truncated=True)
                if kind == "s":
                    arg = int.from_bytes(data[i : i + size], "little", signed=True)
                else:
                    self.float_operands.append(i)
                    arg = _DOUBLE.unpack_from(data, i)[0]
                i += size
            elif kind == "long1":
                if i >= n:
                    raise ScanStop(f"{name} length cut off", truncated=True)
                length = data[i]
                i += 1
                if i + length > n:
                    raise ScanStop(f"{name} of {length} bytes runs past the end", truncated=True)
                arg = int.from_bytes(data[i : i + length], "little", signed=True)
                i += length
            else:
                if reader is None:
                    reader = io.BytesIO(data)
                arg, i = _read_slow(reader, op, i, n)
            # -- apply it: the frequent opcodes here, most frequent first
            if name == "BINPUT" or name == "LONG_BINPUT" or name == "PUT":
                if not stack:
                    raise ScanStop("memo PUT on an empty stack")
                memo[arg] = stack[-1]
            elif name == "BINGET" or name == "LONG_BINGET" or name == "GET":
                if arg not in memo:
                    raise ScanStop(f"memo key {arg} missing")
                stack.append(memo[arg])
            elif name in _CONSTANT_OPS:
                if arg.__class__ is str and arg in MARKERS:
                    self.markers.add(arg)
                stack.append(arg)
                if i < n and data[i] in _INT_CODES:  # more ints follow: push the run at once
                    i = self._ints(data, i, stack)
            elif name == "MARK":
                if len(metastack) >= MAX_MARK_DEPTH:
                    raise ScanStop(f"nested deeper than {MAX_MARK_DEPTH:,} MARKs", limit=True)
                metastack.append(stack)
                stack = []
            elif name == "TUPLE":
                items, stack = _pop_mark(stack, metastack)
                stack.append(tuple(items))
            elif name == "TUPLE1":
                stack.append((_pop(stack),))
            elif name == "TUPLE2":
                b = _pop(stack)
                stack.append((_pop(stack), b))
            elif name == "TUPLE3":
                c = _pop(stack)
                b = _pop(stack)
                stack.append((_pop(stack), b, c))
            elif name == "REDUCE" or name == "NEWOBJ":
                args = _pop(stack)
                stack.append(self._call(_pop(stack), args, new=name == "NEWOBJ"))
            elif name == "BINPERSID":
                stack.append(self._persistent(_pop(stack)))
            elif name == "MEMOIZE":
                if not stack:
                    raise ScanStop("MEMOIZE on an empty stack")
                memo[len(memo)] = stack[-1]
            elif name == "NEWFALSE":
                stack.append(False)
            elif name == "NEWTRUE":
                stack.append(True)
            elif name == "NONE":
                stack.append(None)
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "EMPTY_DICT":
                stack.append(DictNode())
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name == "SETITEMS":
                items, stack = _pop_mark(stack, metastack)
                _add_items(stack, list(zip(items[::2], items[1::2], strict=False)), pairs=True)
            elif name == "SETITEM":
                value = _pop(stack)
                key = _pop(stack)
                _add_items(stack, [(key, value)], pairs=True)
            elif name == "APPENDS" or name == "ADDITEMS":
                items, stack = _pop_mark(stack, metastack)
                _add_items(stack, items, pairs=False)
            elif name == "APPEND":
                value = _pop(stack)
                _add_items(stack, [value], pairs=False)
            elif name == "STOP":
                if not stack:
                    raise ScanStop("STOP on an empty stack")
                return stack[-1], i
            else:
                stack = self._apply_rare(name, arg, stack, metastack)

    def _ints(self, data: bytes, i: int, stack: list) -> int:
        """Push the run of integer opcodes (BININT1, BININT2, BININT, LONG1) that starts at ``data[i]``:
        the offset after it. An rng_state.pth holds Python's Mersenne state, 625 ints in a row: a long run
        is decoded by the C unpickler a chunk at a time (~3x faster than the loop below, ~6x than one by
        one through ``_run``'s dispatch); the loop takes what is left. The run stops short of an opcode
        whose argument is cut off, or one past the opcode budget: ``_run`` replays that one itself (same
        count, same error)."""
        n = len(data)
        base = len(stack)
        while True:  # a chunk at a time, in C
            match = _INT_RUN.match(data, i)
            if match is None or match.end() - i < _RUN_MIN * 2:
                break
            # PROTO 2, MARK, the chunk, TUPLE, STOP: the same values as one by one, decoded in C
            ints = pickle.loads(b"\x80\x02(" + data[i : match.end()] + b"t.")
            if len(ints) > MAX_OPCODES - self.opcodes:  # the loop below trips at the exact opcode
                break
            stack.extend(ints)
            self.opcodes += len(ints)
            base += len(ints)
            i = match.end()
            if len(ints) < _RUN_CHUNK:
                break
        push = stack.append
        from_bytes = int.from_bytes
        int4 = _INT4
        for _ in range(MAX_OPCODES - self.opcodes):
            if i >= n:
                break
            code = data[i]
            if code == 0x4A and i + 5 <= n:  # BININT: 4 bytes, signed
                push(int4(data, i + 1)[0])
                i += 5
            elif code == 0x8A and i + 1 < n and i + 2 + data[i + 1] <= n:  # LONG1: length byte, signed int
                end = i + 2 + data[i + 1]
                push(from_bytes(data[i + 2 : end], "little", signed=True))
                i = end
            elif code == 0x4B and i + 2 <= n:  # BININT1: 1 byte, unsigned
                push(data[i + 1])
                i += 2
            elif code == 0x4D and i + 3 <= n:  # BININT2: 2 bytes, unsigned
                push(data[i + 1] | data[i + 2] << 8)
                i += 3
            else:
                break
        self.opcodes += len(stack) - base
        return i

    def _apply_rare(self, name: str, arg: Any, stack: list, metastack: list[list]) -> list:
        """Apply an opcode that is not in ``_run``'s fast path; returns the stack (MARK pops rebind it)."""
        if name == "GLOBAL":
            module, _, gname = str(arg).partition(" ")
            stack.append(self._global(module, gname))
        elif name == "STACK_GLOBAL":
            gname = _pop(stack)
            module = _pop(stack)
            stack.append(self._global(module, gname))
        elif name == "BUILD":
            state = _pop(stack)
            if not stack:
                raise ScanStop("BUILD on an empty stack")
            if isinstance(stack[-1], Call):
                stack[-1].state = state
            elif not isinstance(stack[-1], (DictNode, list, SetNode)):
                # BUILD on a class or a constant sets attributes on it (setattr on a class object)
                self._record(f"<attributes set on a {_kind_of(stack[-1])}>", "unsafe")
        elif name == "EMPTY_SET":
            stack.append(SetNode())
        elif name == "LIST":
            items, stack = _pop_mark(stack, metastack)
            stack.append(items)
        elif name == "DICT":
            items, stack = _pop_mark(stack, metastack)
            stack.append(DictNode(list(zip(items[::2], items[1::2], strict=False))))
        elif name == "FROZENSET":
            items, stack = _pop_mark(stack, metastack)
            stack.append(SetNode(items))
        elif name == "POP":
            if stack:
                stack.pop()
            else:
                _, stack = _pop_mark(stack, metastack)
        elif name == "POP_MARK":
            _, stack = _pop_mark(stack, metastack)
        elif name == "DUP":
            if not stack:
                raise ScanStop("DUP on an empty stack")
            stack.append(stack[-1])
        elif name == "INST":
            module, _, gname = str(arg).partition(" ")
            items, stack = _pop_mark(stack, metastack)
            stack.append(self._call(self._global(module, gname), tuple(items)))
        elif name == "OBJ":
            items, stack = _pop_mark(stack, metastack)
            if not items:
                raise ScanStop("OBJ without a class")
            stack.append(self._call(items[0], tuple(items[1:])))
        elif name == "NEWOBJ_EX":
            _pop(stack)  # kwargs
            args = _pop(stack)
            stack.append(self._call(_pop(stack), args, new=True))
        elif name == "PERSID":
            stack.append(self._persistent(arg))
        elif name == "EXT1" or name == "EXT2" or name == "EXT4":
            stack.append(self._global("copyreg-extension", str(arg)))
        elif name == "NEXT_BUFFER":
            stack.append(Buffer())
        elif name == "PROTO":
            self.proto = arg
        elif name == "FRAME" or name == "READONLY_BUFFER":
            pass
        else:
            raise ScanStop(f"unhandled opcode {name}")
        return stack


def _as_imported(module: str, name: str, proto: int) -> tuple[str, str]:
    """The module and name Python (and torch.load) actually import for a GLOBAL: protocols below 3 map
    Python 2 names (``__builtin__.eval`` is ``builtins.eval``, ``commands`` is ``subprocess``)."""
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    return _TORCH_MODULE_MAPPING.get(module, module), name


def _kind_of(value: Any) -> str:
    if isinstance(value, Call):
        return "call result"
    if isinstance(value, Persistent):
        return "persistent object"
    if isinstance(value, GlobalRef):
        return "class or function"
    return type(value).__name__


def _read_slow(reader: io.BytesIO, op: Any, i: int, n: int) -> tuple[Any, int]:
    """An argument read with pickletools' own reader (text protocol 0, LONG, BINSTRING, ...):
    (argument, offset after it)."""
    reader.seek(i)
    try:
        arg = op.arg.reader(reader)
    except ValueError as e:
        raise ScanStop(f"{op.name}: {str(e)[:120]}", truncated=reader.tell() >= n) from None
    return arg, reader.tell()
