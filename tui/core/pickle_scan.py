"""Static scan of torch pickles (.pt/.pth/.bin/.ckpt): zip structure + pickle opcodes, never unpickled.

API (docs/ARCHITECTURE.md, "Core API")::

    @dataclass PickleReport(format, entries, tensors, parameters, dtypes, globals, unsafe_globals,
                            lightning, top_keys, problems, ...)
    scan_pickle(path) -> PickleReport        # never unpickles, never imports what it reads, never raises

Formats:

* ``"zip"``: what ``torch.save`` writes since torch 1.6 (a zip holding ``<name>/data.pkl`` plus one
  ``<name>/data/<key>`` record per storage). A zip whose central directory is gone (a truncated copy)
  gives the problem "zip central directory missing: truncated file? (...)".
* ``"legacy"``: a plain pickle, or the pre-1.6 torch layout (magic-number pickle, protocol pickle,
  sys-info pickle, the object pickle, the storage-key pickle, then raw storage bytes). Only the first
  64 MiB are read: the pickles come before the storage bytes.
* ``"not-pickle"``: anything else (random bytes, a MindSpore protobuf .ckpt, safetensors named .pt),
  with a problem saying so.

How: a small *symbolic* stack machine replays the opcodes (arguments decoded with ``struct`` for the
common binary opcodes and with ``pickletools``' own argument readers for the rest). It pushes inert
placeholders (a ``GLOBAL`` becomes a name, ``REDUCE`` a record of "call this name with these
arguments") and never imports or calls anything, so a malicious ``__reduce__`` is just data here.
Limits make hostile files cheap: at most 64 MiB of pickle bytes (legacy files: 4 MiB first, more only
if the pickles run past it), 2,000,000 opcodes (about 1 s) and 100,000 nested MARKs per file, 1,000,000
containers walked for names; no recursion anywhere (deeply nested pickles are walked with explicit
stacks). Hitting a limit is a problem "scan of ... stopped at a limit (...)"; counts are then partial.

What the replay yields:

* ``tensors``: the number of tensor objects (``torch._utils._rebuild_tensor*`` calls, including ones
  wrapped in ``_rebuild_parameter`` or a tensor subclass); a tensor object referenced twice (pickle memo)
  counts once. ``parameters``: the sum of their numels, from the shapes in the pickle, so views and
  shared storages count like ``sum(t.numel())`` does. ``dtypes``: dtype -> parameters, with safetensors
  names (F32, F16, BF16, I64, U8, BOOL, C64, F8_E4M3, ...) and torch's own name where safetensors has
  none (``complex128``, ``qint8``). Every tensor in the file counts: weights, buffers, optimizer moments.
  ``parameters_by_key`` splits the count by top-level key (e.g. ``state_dict`` vs ``optimizer_states``).
* ``entries``: the tensors' names, dotted key paths from the root (``l.weight`` in a state_dict,
  ``state_dict.l.weight`` in a Lightning checkpoint); ``tensor_table``: name -> [dtype, shape].
* ``storages`` / ``storage_bytes``: from the persistent ids ``('storage', torch.FloatStorage, key,
  location, numel)`` (torch >= 2.x writes ``torch.storage.UntypedStorage`` + a ``torch.<dtype>`` argument
  of ``_rebuild_tensor_v3`` for newer dtypes such as float8; numel is then in bytes). For zips, each
  storage is checked against its ``data/<key>`` record (missing or short records are problems).
* ``top_keys``: the root dict's keys (first 1000); ``lightning``: the root holds
  ``pytorch-lightning_version``, or ``state_dict`` with ``callbacks``/``optimizer_states``/``loops``.

Globals. Every ``module.name`` a pickle would import is listed in ``globals``. Those outside the allowlist
go to ``unsafe_globals`` with a problem each, in two tiers:

* "unsafe pickle global os.system (would run code on load)": anything in ``os``, ``posix``, ``nt``,
  ``subprocess``, ``sys``, ``shutil``, ``socket``, ``importlib``, ``runpy``, ``pty``, ``webbrowser`` and
  similar (``ctypes``, ``multiprocessing``, ``pickle``, ``marshal``, ``operator``, ``io``, ``code``,
  ``types``, ``urllib``, ...), ``builtins.eval/exec/compile/__import__/getattr/setattr/open/...``, and any
  dotted name that reaches through an attribute to one of those or to a dunder
  (``torch.serialization os.system`` resolves to ``os.system``).
* "pickle global x.Y is not on the allowlist (loading imports it and may run its code)": everything else
  not allowed below, e.g. a user's ``__main__.Model`` or ``functools.partial``.

Allowed (loading them only rebuilds data):

* exact names: ``builtins`` set/frozenset/tuple/list/dict/int/float/str/bytes/bytearray/complex/slice/
  range/bool/object (and the py2 ``__builtin__`` spellings); ``collections`` OrderedDict/defaultdict/
  Counter/deque; ``copyreg._reconstructor``; ``_codecs.encode``; ``argparse.Namespace``; ``pathlib``
  paths; ``datetime``, ``decimal.Decimal``, ``fractions.Fraction``, ``uuid.UUID``; numpy's array/scalar
  reconstructors, ``numpy.dtype``/``ndarray``, ``numpy.dtypes.*``, numpy bit generators; torch's tensor
  and parameter rebuilders (``torch._utils._rebuild_*`` except ``_load_from_bytes``), its dtypes,
  layouts, memory formats and ``torch.device``; DeepSpeed's ``fragment_address`` namedtuple.
* class-like names (the last component starts with a capital letter) inside ``torch``, ``lightning``,
  ``pytorch_lightning``, ``lightning_fabric``, ``transformers``, ``accelerate``, ``deepspeed``, ``peft``,
  ``torchmetrics``, ``omegaconf``, ``typing``, ``enum`` and ``numpy.random``: modules, storages,
  configs, TrainingArguments, enums and AttributeDicts that real checkpoints hold (HF's
  ``training_args.bin`` holds ``accelerate.state.PartialState``). Functions there are not allowed, and
  these sub-packages are never allowed because loading through them can execute or fetch code:
  ``torch.hub``, ``torch.jit``, ``torch.package``, ``torch.fx`` (a GraphModule's reduce ``exec``s
  source), ``torch.serialization`` (but ``_get_layout``), ``torch.utils.cpp_extension``, ``torch._dynamo``, ``torch._inductor``,
  ``torch.ops``, ``torch._ops``, ``torch._C``, ``torch.multiprocessing``, ``torch.distributed.rpc``,
  ``transformers.dynamic_module_utils``, ``transformers.pipelines``, ``transformers.utils.hub``,
  ``accelerate.commands``, ``accelerate.launchers``, ``deepspeed.launcher``, ``deepspeed.ops``,
  ``lightning.pytorch.cli``, ``pytorch_lightning.cli``, ``lightning.fabric.cli``, ``lightning.app``.
  This is a heuristic for "data and config classes of known ML libraries", not a proof of safety; a
  flagged global is a reason to look, an allowed one is not a guarantee.
"""

from __future__ import annotations

import io
import os
import pickletools
import zipfile
from dataclasses import dataclass, field
from typing import Any

from tui.core.files import open_regular_file
from tui.core.text import safe_message

__all__ = ["PickleReport", "classify_global", "scan_pickle"]

MAX_PICKLE_BYTES = 64 << 20
LEGACY_FIRST_READ = 4 << 20
MAX_OPCODES = 2_000_000
MAX_MARK_DEPTH = 100_000
MAX_TOP_KEYS = 1000
MAX_ENTRIES = 200_000
MAX_PATH_CHARS = 400
MAX_DIMS = 64
MAX_WALK_NODES = 1_000_000
MAX_GLOBAL_PROBLEMS = 20
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# ----------------------------------------------------------------------------------------------- globals

_UNSAFE_MODULES = frozenset(
    "os posix nt subprocess _posixsubprocess sys shutil socket _socket importlib runpy pty webbrowser "
    "ctypes _ctypes multiprocessing _multiprocessing code codeop pdb bdb marshal pickle _pickle cPickle "
    "copy_reg_unsafe dill cloudpickle types operator _operator io _io tempfile signal threading _thread "
    "asyncio urllib urllib2 http httplib ftplib smtplib telnetlib requests pip setuptools distutils "
    "zipimport pkgutil imp commands popen2 timeit trace cProfile profile inspect gc atexit sysconfig "
    "site ensurepip venv xmlrpc socketserver ssl select selectors mmap resource fcntl termios tty "
    "posixpath ntpath glob fnmatch".split()
)
_UNSAFE_BUILTINS = frozenset(
    "eval exec compile __import__ getattr setattr delattr open input breakpoint globals locals vars "
    "exit quit help __build_class__ __loader__ __spec__ memoryview".split()
)
_BUILTIN_MODULES = frozenset({"builtins", "__builtin__", "__builtins__"})
_SAFE_BUILTINS = frozenset(
    "set frozenset tuple list dict int float str bytes bytearray complex slice range bool object "
    "long unicode NoneType Ellipsis NotImplemented".split()
)

_TORCH_DTYPE_NAMES = {
    "float64": "F64",
    "double": "F64",
    "float32": "F32",
    "float": "F32",
    "float16": "F16",
    "half": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "long": "I64",
    "int32": "I32",
    "int": "I32",
    "int16": "I16",
    "short": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
    "uint16": "U16",
    "uint32": "U32",
    "uint64": "U64",
    "complex64": "C64",
    "cfloat": "C64",
    "complex128": "complex128",
    "cdouble": "complex128",
    "complex32": "complex32",
    "chalf": "complex32",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2fnuz": "F8_E5M2FNUZ",
    "float8_e8m0fnu": "F8_E8M0",
    "float4_e2m1fn_x2": "float4_e2m1fn_x2",
    "qint8": "qint8",
    "quint8": "quint8",
    "qint32": "qint32",
    "quint4x2": "quint4x2",
    "quint2x4": "quint2x4",
    "bits8": "bits8",
    "bits16": "bits16",
    "bits1x8": "bits1x8",
    "bits2x4": "bits2x4",
    "bits4x2": "bits4x2",
}
# storage class name -> (dtype, bytes per storage element)
_STORAGE_TYPES = {
    "DoubleStorage": ("F64", 8),
    "FloatStorage": ("F32", 4),
    "HalfStorage": ("F16", 2),
    "BFloat16Storage": ("BF16", 2),
    "LongStorage": ("I64", 8),
    "IntStorage": ("I32", 4),
    "ShortStorage": ("I16", 2),
    "CharStorage": ("I8", 1),
    "ByteStorage": ("U8", 1),
    "BoolStorage": ("BOOL", 1),
    "ComplexFloatStorage": ("C64", 8),
    "ComplexDoubleStorage": ("complex128", 16),
    "QInt8Storage": ("qint8", 1),
    "QUInt8Storage": ("quint8", 1),
    "QInt32Storage": ("qint32", 4),
    "QUInt4x2Storage": ("quint4x2", 1),
    "QUInt2x4Storage": ("quint2x4", 1),
    "UntypedStorage": ("U8", 1),
}

_SAFE_EXACT = frozenset(
    {f"{m}.{n}" for m in ("builtins", "__builtin__") for n in _SAFE_BUILTINS}
    | {
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.Counter",
        "collections.deque",
        "copyreg._reconstructor",
        "copy_reg._reconstructor",
        "_codecs.encode",
        "codecs.encode",
        "argparse.Namespace",
        "pathlib.Path",
        "pathlib.PosixPath",
        "pathlib.WindowsPath",
        "pathlib.PurePath",
        "pathlib.PurePosixPath",
        "pathlib.PureWindowsPath",
        "datetime.datetime",
        "datetime.date",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
        "fractions.Fraction",
        "uuid.UUID",
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.core.numeric._frombuffer",
        "numpy._core.numeric._frombuffer",
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__generator_ctor",
        "torch.device",
        "torch.Size",
        "torch._tensor._rebuild_from_type",
        "torch._tensor._rebuild_from_type_v2",
        "torch._utils._set_obj_state",
        "torch.serialization._get_layout",
        "torch.nn.parameter.Parameter",
        "torch.nn.parameter.Buffer",
        "torch.nn.parameter.UninitializedParameter",
        "deepspeed.utils.tensor_fragment.fragment_address",
    }
    | {f"torch.{n}" for n in _TORCH_DTYPE_NAMES}
    | {
        f"torch.{n}"
        for n in (
            "strided sparse_coo sparse_csr sparse_csc sparse_bsr sparse_bsc _mkldnn jagged "
            "contiguous_format channels_last channels_last_3d preserve_format"
        ).split()
    }
)
_TRUSTED_NAMESPACES = (
    "torch",
    "lightning",
    "pytorch_lightning",
    "lightning_fabric",
    "transformers",
    "accelerate",
    "deepspeed",
    "peft",
    "torchmetrics",
    "omegaconf",
    "typing",
    "enum",
    "numpy.random",
    "numpy.dtypes",
)
_DENIED_PREFIXES = (
    "torch.hub",
    "torch.jit",
    "torch.package",
    "torch.fx",
    "torch.serialization",
    "torch.utils.cpp_extension",
    "torch._dynamo",
    "torch._inductor",
    "torch.compiler",
    "torch.ops",
    "torch._ops",
    "torch._C",
    "torch.multiprocessing",
    "torch.distributed.rpc",
    "torch._utils._load_from_bytes",
    "torch.storage._load_from_bytes",
    "torch.load",
    "transformers.dynamic_module_utils",
    "transformers.pipelines",
    "transformers.utils.hub",
    "accelerate.commands",
    "accelerate.launchers",
    "deepspeed.launcher",
    "deepspeed.ops",
    "lightning.pytorch.cli",
    "pytorch_lightning.cli",
    "lightning.fabric.cli",
    "lightning.app",
)
_TENSOR_REBUILDERS = frozenset(
    {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_qtensor"}
)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def classify_global(module: str, name: str) -> str:
    """``"ok"``, ``"unsafe"`` (would run code on load) or ``"unlisted"`` (not on the allowlist)."""
    parts = name.split(".")
    top = module.split(".", 1)[0]
    if top in _UNSAFE_MODULES:
        return "unsafe"
    if module in _BUILTIN_MODULES and (parts[0] in _UNSAFE_BUILTINS or parts[0] not in _SAFE_BUILTINS):
        return "unsafe" if parts[0] in _UNSAFE_BUILTINS or len(parts) > 1 else "unlisted"
    if len(parts) > 1 and any(
        p in _UNSAFE_MODULES or p in _BUILTIN_MODULES or p.startswith("__") for p in parts
    ):
        return "unsafe"  # attribute traversal to os.system, __globals__, __builtins__, ...
    full = f"{module}.{name}"
    if full in _SAFE_EXACT:
        return "ok"
    if module == "torch._utils" and name.startswith("_rebuild_") and len(parts) == 1:
        return "ok"
    if any(_under(full, p) for p in _DENIED_PREFIXES):
        return "unlisted"
    if any(_under(module, ns) for ns in _TRUSTED_NAMESPACES) and parts[-1][:1].isupper():
        return "ok"
    return "unlisted"


# ---------------------------------------------------------------------------------------------- report


@dataclass
class PickleReport:
    format: str  # "zip" | "legacy" | "not-pickle"
    entries: list[str] = field(default_factory=list)  # tensor names (dotted key paths), pickle order
    tensors: int | None = None
    parameters: int | None = None
    dtypes: dict[str, int] | None = None
    globals: list[str] = field(default_factory=list)
    unsafe_globals: list[str] = field(default_factory=list)
    lightning: bool = False
    top_keys: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Beyond the contract: detail for the inspect pane and for diffs.
    storages: int | None = None
    storage_bytes: int | None = None
    parameters_by_key: dict[str, int] = field(default_factory=dict)
    tensor_table: dict[str, list] = field(default_factory=dict)  # name -> [dtype, [shape...]]
    pickle_name: str | None = None  # the archive member scanned ("archive/data.pkl")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy (``dataclasses.asdict`` deep-copies value by value: slow on big tables)."""
        out = dict(vars(self))
        for key in ("entries", "globals", "unsafe_globals", "top_keys", "problems"):
            out[key] = list(out[key])
        for key in ("dtypes", "parameters_by_key"):
            out[key] = dict(out[key]) if out[key] is not None else None
        out["tensor_table"] = {
            k: [d, list(s) if s is not None else None] for k, (d, s) in self.tensor_table.items()
        }
        return out


# --------------------------------------------------------------------------------- symbolic machine


class _ScanStop(Exception):
    """The pickle cannot be replayed further; the message is the reason."""

    def __init__(self, message: str, *, truncated: bool = False, limit: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated  # ran off the end of the bytes we have
        self.limit = limit  # one of our limits, not a fault of the file

    def describe(self, label: str, what: str) -> str:
        if self.limit:
            return f"{label}: scan of {what} stopped at a limit ({self})"
        return f"{label}: {what} is corrupt or truncated ({self})"


class _Global:
    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


class _Call:
    """``func(*args)``, never performed; ``pairs`` collects SETITEMs, ``items`` APPENDs, ``state`` BUILD."""

    __slots__ = ("func", "args", "pairs", "items", "state", "tensor")

    def __init__(self, func: Any, args: Any) -> None:
        self.func, self.args = func, args
        self.pairs: list | None = None
        self.items: list | None = None
        self.state: Any = None
        self.tensor: tuple[str, tuple[int, ...] | None] | None = None


class _Dict:
    __slots__ = ("pairs",)

    def __init__(self, pairs: list | None = None) -> None:
        self.pairs = pairs if pairs is not None else []


class _Set:
    __slots__ = ("items",)

    def __init__(self, items: list | None = None) -> None:
        self.items = items if items is not None else []


class _Persistent:
    __slots__ = ("pid",)

    def __init__(self, pid: Any) -> None:
        self.pid = pid


class _Buffer:
    __slots__ = ()


_MARKERS = frozenset(
    {"pytorch-lightning_version", "state_dict", "callbacks", "optimizer_states", "loops", "lr_schedulers"}
)


class _Machine:
    """Replays pickle opcodes over placeholders. Shared across the pickles of one file (budget, tallies)."""

    def __init__(self) -> None:
        self.opcodes = 0
        self.globals: dict[str, str] = {}  # "module.name" -> classify_global verdict, in first-seen order
        self.tensors: list[_Call] = []
        self.storages: dict[str, tuple[str, int]] = {}  # key -> (dtype, bytes)
        self.markers: set[str] = set()

    # ---- helpers
    def _global(self, module: Any, name: Any) -> _Global:
        if not isinstance(module, str) or not isinstance(name, str):
            module, name = "<non-string>", f"<{type(module).__name__}, {type(name).__name__}>"
            verdict = "unsafe"
        else:
            verdict = classify_global(module, name)
            module, name = module[:200], name[:200]  # for display; judged on the full text above
        key = f"{module}.{name}"
        # Bounded, but a flood of harmless names must not hide a harmful one behind the bound.
        if key not in self.globals and len(self.globals) < (10_000 if verdict == "ok" else 100_000):
            self.globals[key] = verdict
        return _Global(module, name)

    def _persistent(self, pid: Any) -> _Persistent:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            stype, key, numel = pid[1], pid[2], pid[4]
            if isinstance(key, str) and isinstance(stype, _Global) and _is_count(numel):
                dtype, size = _STORAGE_TYPES.get(stype.name, ("?", 1))
                if key not in self.storages:
                    self.storages[key] = (dtype, numel * size)
        return _Persistent(pid)

    def _call(self, func: Any, args: Any) -> _Call:
        call = _Call(func, args)
        if not (isinstance(func, _Global) and isinstance(args, tuple)):
            return call
        inner, inner_args = func, args
        if func.name == "_rebuild_from_type_v2" and len(args) >= 3 and isinstance(args[0], _Global):
            inner, inner_args = args[0], args[2]  # tensor subclass: (rebuild_fn, type, rebuild_args, state)
        if inner.module != "torch._utils" or not isinstance(inner_args, tuple):
            return call
        if inner.name in _TENSOR_REBUILDERS and len(inner_args) >= 3:
            call.tensor = (self._tensor_dtype(inner.name, inner_args), _shape(inner_args[2]))
            self.tensors.append(call)
        elif inner.name == "_rebuild_meta_tensor_no_storage" and len(inner_args) >= 2:
            dt = inner_args[0]
            dtype = _TORCH_DTYPE_NAMES.get(dt.name, dt.name) if isinstance(dt, _Global) else "?"
            call.tensor = (dtype, _shape(inner_args[1]))
            self.tensors.append(call)
        return call

    @staticmethod
    def _tensor_dtype(rebuilder: str, args: tuple) -> str:
        if rebuilder == "_rebuild_tensor_v3" and len(args) >= 7 and isinstance(args[6], _Global):
            return _TORCH_DTYPE_NAMES.get(args[6].name, args[6].name)
        storage = args[0]
        if isinstance(storage, _Persistent) and isinstance(storage.pid, tuple) and len(storage.pid) >= 2:
            stype = storage.pid[1]
            if isinstance(stype, _Global):
                return _STORAGE_TYPES.get(stype.name, (stype.name, 1))[0]
        return "?"

    # ---- the replay
    def run(self, data: bytes, pos: int) -> tuple[Any, int]:
        """Replay the pickle starting at ``data[pos]`` up to its STOP: (root object, offset after STOP).

        Raises _ScanStop. Arguments are decoded here with ``struct`` for the common binary opcodes and
        with pickletools' own argument readers for the rest (text protocol 0, LONG, BINSTRING, ...).
        """
        stack: list = []
        metastack: list[list] = []
        memo: dict[int, Any] = {}
        n = len(data)
        bio: io.BytesIO | None = None
        i = pos

        def pop() -> Any:
            if not stack:
                raise _ScanStop("stack underflow")
            return stack.pop()

        def pop_mark() -> list:
            nonlocal stack
            if not metastack:
                raise _ScanStop("MARK missing")
            items = stack
            stack = metastack.pop()
            return items

        try:
            while True:
                if i >= n:
                    raise _ScanStop("no STOP opcode (truncated)", truncated=True)
                code = data[i]
                spec = _OPS.get(code)
                if spec is None:
                    raise _ScanStop(f"unknown opcode {bytes([code])!r} at byte {i}")
                name, kind, size, op = spec
                i += 1
                self.opcodes += 1
                if self.opcodes > MAX_OPCODES:
                    raise _ScanStop(f"after {MAX_OPCODES:,} opcodes; counts are partial", limit=True)
                # -- decode the argument
                if kind is None:
                    arg = None
                elif kind == "u":
                    if i + size > n:
                        raise _ScanStop(f"{name} argument cut off", truncated=True)
                    arg = int.from_bytes(data[i : i + size], "little")
                    i += size
                elif kind == "str" or kind == "bytes":
                    if i + size > n:
                        raise _ScanStop(f"{name} length cut off", truncated=True)
                    length = int.from_bytes(data[i : i + size], "little")
                    i += size
                    if i + length > n:
                        raise _ScanStop(f"{name} of {length} bytes runs past the end", truncated=True)
                    raw = data[i : i + length]
                    i += length
                    arg = raw.decode("utf-8", "surrogatepass") if kind == "str" else raw
                else:  # pickletools' reader, for the rare opcodes
                    if bio is None:
                        bio = io.BytesIO(data)
                    bio.seek(i)
                    try:
                        arg = op.arg.reader(bio)
                    except ValueError as e:
                        raise _ScanStop(f"{name}: {str(e)[:120]}", truncated=bio.tell() >= n) from None
                    i = bio.tell()
                # -- apply it, most frequent first
                if name == "BINPUT" or name == "LONG_BINPUT" or name == "PUT":
                    if not stack:
                        raise _ScanStop("memo PUT on an empty stack")
                    memo[arg] = stack[-1]
                elif name == "BINGET" or name == "LONG_BINGET" or name == "GET":
                    if arg not in memo:
                        raise _ScanStop(f"memo key {arg} missing")
                    stack.append(memo[arg])
                elif name in _CONSTANT_OPS:
                    if arg.__class__ is str and arg in _MARKERS:
                        self.markers.add(arg)
                    stack.append(arg)
                elif name == "MARK":
                    if len(metastack) >= MAX_MARK_DEPTH:
                        raise _ScanStop(f"nested deeper than {MAX_MARK_DEPTH:,} MARKs", limit=True)
                    metastack.append(stack)
                    stack = []
                elif name == "TUPLE":
                    items = pop_mark()  # before touching ``stack``: pop_mark rebinds it
                    stack.append(tuple(items))
                elif name == "TUPLE1":
                    stack.append((pop(),))
                elif name == "TUPLE2":
                    b = pop()
                    stack.append((pop(), b))
                elif name == "TUPLE3":
                    c = pop()
                    b = pop()
                    stack.append((pop(), b, c))
                elif name == "REDUCE" or name == "NEWOBJ":
                    args = pop()
                    stack.append(self._call(pop(), args))
                elif name == "BINPERSID":
                    stack.append(self._persistent(pop()))
                elif name == "MEMOIZE":
                    if not stack:
                        raise _ScanStop("MEMOIZE on an empty stack")
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
                    stack.append(_Dict())
                elif name == "EMPTY_LIST":
                    stack.append([])
                elif name == "SETITEMS":
                    items = pop_mark()
                    _add_items(stack, list(zip(items[::2], items[1::2], strict=False)), pairs=True)
                elif name == "SETITEM":
                    value = pop()
                    key = pop()
                    _add_items(stack, [(key, value)], pairs=True)
                elif name == "APPENDS" or name == "ADDITEMS":
                    items = pop_mark()
                    _add_items(stack, items, pairs=False)
                elif name == "APPEND":
                    value = pop()
                    _add_items(stack, [value], pairs=False)
                elif name == "GLOBAL":
                    module, _, gname = str(arg).partition(" ")
                    stack.append(self._global(module, gname))
                elif name == "STACK_GLOBAL":
                    gname = pop()
                    module = pop()
                    stack.append(self._global(module, gname))
                elif name == "BUILD":
                    state = pop()
                    if not stack:
                        raise _ScanStop("BUILD on an empty stack")
                    if isinstance(stack[-1], _Call):
                        stack[-1].state = state
                elif name == "EMPTY_SET":
                    stack.append(_Set())
                elif name == "LIST":
                    items = pop_mark()
                    stack.append(items)
                elif name == "DICT":
                    items = pop_mark()
                    stack.append(_Dict(list(zip(items[::2], items[1::2], strict=False))))
                elif name == "FROZENSET":
                    items = pop_mark()
                    stack.append(_Set(items))
                elif name == "POP":
                    if stack:
                        stack.pop()
                    else:
                        pop_mark()
                elif name == "POP_MARK":
                    pop_mark()
                elif name == "DUP":
                    if not stack:
                        raise _ScanStop("DUP on an empty stack")
                    stack.append(stack[-1])
                elif name == "INST":
                    module, _, gname = str(arg).partition(" ")
                    items = pop_mark()
                    stack.append(self._call(self._global(module, gname), tuple(items)))
                elif name == "OBJ":
                    items = pop_mark()
                    if not items:
                        raise _ScanStop("OBJ without a class")
                    stack.append(self._call(items[0], tuple(items[1:])))
                elif name == "NEWOBJ_EX":
                    pop()  # kwargs
                    args = pop()
                    stack.append(self._call(pop(), args))
                elif name == "PERSID":
                    stack.append(self._persistent(arg))
                elif name == "EXT1" or name == "EXT2" or name == "EXT4":
                    stack.append(self._global("copyreg-extension", str(arg)))
                elif name == "NEXT_BUFFER":
                    stack.append(_Buffer())
                elif name == "PROTO" or name == "FRAME" or name == "READONLY_BUFFER":
                    pass
                elif name == "STOP":
                    if not stack:
                        raise _ScanStop("STOP on an empty stack")
                    return stack[-1], i
                else:
                    raise _ScanStop(f"unhandled opcode {name}")
        except _ScanStop:
            raise
        except Exception as e:  # bad UTF-8, int text over the digit limit, MemoryError, ...
            raise _ScanStop(f"{type(e).__name__}: {str(e)[:160]}") from None


# opcode byte -> (name, argument kind, size of the fixed part, pickletools opcode). Kinds: None (no
# argument), "u" (unsigned little-endian int of ``size`` bytes), "str"/"bytes" (a ``size``-byte length
# then that many bytes), "slow" (pickletools' reader).
_FAST_ARGS = {
    "BININT1": ("u", 1),
    "BININT2": ("u", 2),
    "BINGET": ("u", 1),
    "LONG_BINGET": ("u", 4),
    "BINPUT": ("u", 1),
    "LONG_BINPUT": ("u", 4),
    "PROTO": ("u", 1),
    "FRAME": ("u", 8),
    "EXT1": ("u", 1),
    "EXT2": ("u", 2),
    "SHORT_BINUNICODE": ("str", 1),
    "BINUNICODE": ("str", 4),
    "BINUNICODE8": ("str", 8),
    "SHORT_BINBYTES": ("bytes", 1),
    "BINBYTES": ("bytes", 4),
    "BINBYTES8": ("bytes", 8),
}
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


def _add_items(stack: list, items: list, *, pairs: bool) -> None:
    """SETITEM(S) / APPEND(S) / ADDITEMS into the container on top of the stack; other targets ignore them."""
    if not stack:
        raise _ScanStop("no container on the stack")
    target = stack[-1]
    if isinstance(target, _Call):
        if pairs:
            if target.pairs is None:
                target.pairs = []
            target.pairs.extend(items)
        else:
            if target.items is None:
                target.items = []
            target.items.extend(items)
    elif pairs and isinstance(target, _Dict):
        target.pairs.extend(items)
    elif not pairs and isinstance(target, list):
        target.extend(items)
    elif not pairs and isinstance(target, _Set):
        target.items.extend(items)


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < (1 << 63)


def _shape(v: Any) -> tuple[int, ...] | None:
    """A plausible tensor shape (<= 64 dims, numel < 2**63), else None. Bounding it here keeps a hostile
    shape of a million huge dimensions from costing a quadratic big-integer product."""
    if isinstance(v, _Call) and isinstance(v.func, _Global) and v.func.name == "Size" and v.args:
        v = v.args[0]  # torch.Size((2, 3))
    if not isinstance(v, (tuple, list)) or len(v) > MAX_DIMS:
        return None
    n = 1
    for d in v:
        if not _is_count(d):
            return None
        n *= d
        if n >= 1 << 63:
            return None
    return tuple(v)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# -------------------------------------------------------------------------------------------- analysis


def _key_str(key: Any) -> str:
    if isinstance(key, str):
        return key[:200]
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    return "?"


def _dict_pairs(node: Any) -> list | None:
    if isinstance(node, _Dict):
        return node.pairs
    if isinstance(node, _Call) and node.pairs is not None:
        return node.pairs
    return None


_CONTAINERS = (list, tuple, _Dict, _Call, _Set)


def _children(node: Any, path: str) -> list[tuple[Any, str]]:
    """Container children as (child, path), in pickle order. Paths grow by dict keys and list indexes,
    not by call arguments, and stop growing past MAX_PATH_CHARS (deep nesting stays linear)."""
    grow = len(path) <= MAX_PATH_CHARS
    dot = f"{path}." if path else ""
    out: list[tuple[Any, str]] = []
    if isinstance(node, (list, tuple)):
        for i, c in enumerate(node):
            if isinstance(c, _CONTAINERS):
                out.append((c, f"{dot}{i}" if grow else path))
        return out
    if isinstance(node, _Set):
        return [(c, path) for c in node.items if isinstance(c, _CONTAINERS)]
    if isinstance(node, _Call):
        if isinstance(node.args, tuple):
            out.extend((a, path) for a in node.args if isinstance(a, _CONTAINERS))
        if isinstance(node.state, _CONTAINERS):
            out.append((node.state, path))
        if node.items:
            for i, c in enumerate(node.items):
                if isinstance(c, _CONTAINERS):
                    out.append((c, f"{dot}{i}" if grow else path))
    pairs = _dict_pairs(node)
    if pairs:
        for k, v in pairs:
            if isinstance(v, _CONTAINERS):
                out.append((v, f"{dot}{_key_str(k)}" if grow else path))
    return out


def _walk(root: Any, report: PickleReport, *, want_names: bool) -> None:
    """top_keys; and when ``want_names``, name the tensors reachable from ``root`` and fill
    parameters_by_key, visiting at most MAX_WALK_NODES containers. No recursion."""
    top_pairs = _dict_pairs(root)
    if top_pairs is not None:
        report.top_keys = [_key_str(k) for k, _ in top_pairs[:MAX_TOP_KEYS]]
    if not want_names:
        return
    seen: set[int] = set()
    todo: list[tuple[Any, str, str | None]]  # (node, path, top-level key)
    if top_pairs is not None:
        seen.add(id(root))
        todo = [(v, _key_str(k), _key_str(k)) for k, v in reversed(top_pairs) if isinstance(v, _CONTAINERS)]
    else:
        todo = [(root, "", None)] if isinstance(root, _CONTAINERS) else []
    while todo and len(seen) < MAX_WALK_NODES:
        node, path, top = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.__class__ is _Call and node.tensor is not None:
            dtype, shape = node.tensor
            name = path or "<root>"
            if len(report.entries) < MAX_ENTRIES and name not in report.tensor_table:
                report.entries.append(name)
                report.tensor_table[name] = [dtype, list(shape) if shape is not None else None]
            if top is not None and shape is not None:
                report.parameters_by_key[top] = report.parameters_by_key.get(top, 0) + _numel(shape)
            continue
        kids = _children(node, path)
        kids.reverse()
        todo.extend((c, p, top) for c, p in kids)


# ------------------------------------------------------------------------------------------------ scan


def scan_pickle(path: str | os.PathLike) -> PickleReport:
    """Describe the pickle at ``path`` without unpickling it (see the module docstring). Never raises."""
    try:
        name = os.fsdecode(path)
        label = safe_message(os.path.basename(name) or name)
        report = _scan(name, label)
    except Exception as e:  # a last line of defence: the contract is "never raises"
        return PickleReport(
            format="not-pickle", problems=[safe_message(f"scan failed ({type(e).__name__}: {e})"[:300])]
        )
    report.problems = [safe_message(p) for p in report.problems]
    return report


def _scan(path: str | os.PathLike, label: str) -> PickleReport:
    try:
        fd, size = open_regular_file(path)
    except ValueError as e:
        return PickleReport(format="not-pickle", problems=[f"{label}: {e}"])
    except OSError as e:
        return PickleReport(format="not-pickle", problems=[f"{label}: cannot open ({e.strerror or e})"])
    with os.fdopen(fd, "rb") as f:
        if size == 0:
            return PickleReport(format="not-pickle", problems=[f"{label}: zero-byte file"])
        head = f.read(2)
        f.seek(0)
        if head == b"PK":
            return _scan_zip(f, label)
        return _scan_legacy(f, size, label)


def _scan_zip(f: Any, label: str) -> PickleReport:
    report = PickleReport(format="zip")
    try:
        zf = zipfile.ZipFile(f)
    except zipfile.BadZipFile as e:
        report.problems.append(f"{label}: zip central directory missing: truncated file? ({e})")
        return report
    except Exception as e:  # LargeZipFile, OSError, struct/Unicode errors from hostile directories
        report.problems.append(
            f"{label}: zip central directory unreadable: corrupt file? ({type(e).__name__}: {e})"
        )
        return report
    with zf:
        try:
            infos = zf.infolist()
            pkls = sorted(
                (i for i in infos if i.filename == "data.pkl" or i.filename.endswith("/data.pkl")),
                key=lambda i: (i.filename.count("/"), i.filename),
            )
            if not pkls:
                report.problems.append(f"{label}: zip archive has no data.pkl: not a torch.save file")
                return report
            info = pkls[0]
            report.pickle_name = info.filename
            if info.file_size > MAX_PICKLE_BYTES:
                report.problems.append(
                    f"{label}: {info.filename} is {info.file_size} bytes; only the first "
                    f"{MAX_PICKLE_BYTES >> 20} MiB were scanned, counts are partial"
                )
            with zf.open(info) as member:
                data = member.read(MAX_PICKLE_BYTES)
            sizes = {i.filename: i.file_size for i in infos}
        except Exception as e:  # bad local header, CRC mismatch, unsupported compression, zlib errors
            report.problems.append(
                f"{label}: cannot read {report.pickle_name or 'the archive'}: corrupt file? "
                f"({type(e).__name__}: {e})"
            )
            return report
    machine = _Machine()
    root, _end, stop = _run_one(machine, data, 0)
    if stop is not None:
        report.problems.append(stop.describe(label, info.filename))
    _finish(machine, root, report, label)
    # Each storage named in data.pkl is a data/<key> record holding exactly its bytes.
    prefix = info.filename[: -len("data.pkl")]
    missing, short = [], []
    for key, (_dtype, nbytes) in machine.storages.items():
        have = sizes.get(f"{prefix}data/{key}")
        if have is None:
            missing.append(key)
        elif have < nbytes:
            short.append(f"{key} ({have} of {nbytes} bytes)")
    if missing:
        report.problems.append(
            f"{label}: {len(missing)} storage record(s) named in {info.filename} missing from the archive: "
            + ", ".join(missing[:10])
        )
    if short:
        report.problems.append(
            f"{label}: {len(short)} storage record(s) shorter than their tensors: " + ", ".join(short[:10])
        )
    return report


def _scan_legacy(f: Any, size: int, label: str) -> PickleReport:
    """A plain pickle or pre-1.6 torch file. Its pickles come before any storage bytes, so read a small
    prefix first and a bigger one (up to MAX_PICKLE_BYTES) only if the pickles run past it."""
    data = f.read(min(size, LEGACY_FIRST_READ))
    report = _replay_legacy(data, label, final=len(data) >= size)
    if report is None:
        data += f.read(min(size, MAX_PICKLE_BYTES) - len(data))
        report = _replay_legacy(data, label, final=True, cut=len(data) < size)
    assert report is not None
    return report


def _replay_legacy(data: bytes, label: str, *, final: bool, cut: bool = False) -> PickleReport | None:
    """The report; None when a pickle ran past the end of ``data`` and a longer prefix may help."""
    machine = _Machine()
    first, end, stop = _run_one(machine, data, 0)
    if stop is not None:
        if stop.truncated and not final:
            return None
        if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
            # It claims to be a pickle (PROTO 2..5) but does not replay: "legacy", and say why.
            report = PickleReport(format="legacy", problems=[stop.describe(label, "pickle")])
            if cut and stop.truncated:
                report.problems.append(f"{label}: only the first {MAX_PICKLE_BYTES >> 20} MiB were scanned")
            _finish(machine, None, report, label)
            return report
        return PickleReport(
            format="not-pickle", problems=[f"{label}: not a torch zip archive or a pickle ({stop})"]
        )
    report = PickleReport(format="legacy")
    root = first
    if isinstance(first, int) and not isinstance(first, bool) and first == _LEGACY_MAGIC:
        # torch.save before 1.6: protocol version, sys info, the object, then the storage keys.
        root = None
        for i in range(3):
            obj, end, stop = _run_one(machine, data, end)
            if stop is not None:
                if stop.truncated and not final:
                    return None
                report.problems.append(stop.describe(label, "legacy torch pickle"))
                if cut and stop.truncated:
                    report.problems.append(
                        f"{label}: only the first {MAX_PICKLE_BYTES >> 20} MiB were scanned"
                    )
                break
            if i == 2:
                root = obj
    _finish(machine, root, report, label)
    return report


def _run_one(machine: _Machine, data: bytes, pos: int) -> tuple[Any, int, _ScanStop | None]:
    """(root, offset after STOP, None) or (None, pos, the reason it stopped)."""
    try:
        root, end = machine.run(data, pos)
        return root, end, None
    except _ScanStop as e:
        stop = _ScanStop(f"pickle at byte {pos}: {e}", truncated=e.truncated, limit=e.limit)
        return None, pos, stop


def _finish(machine: _Machine, root: Any, report: PickleReport, label: str) -> None:
    report.globals = list(machine.globals)
    flagged: list[str] = []
    for g, verdict in machine.globals.items():
        if verdict == "ok":
            continue
        report.unsafe_globals.append(g)
        if verdict == "unsafe":
            flagged.append(f"{label}: unsafe pickle global {g} (would run code on load)")
        else:
            flagged.append(
                f"{label}: pickle global {g} is not on the allowlist (loading imports it and may run its code)"
            )
    flagged.sort(key=lambda m: "unsafe pickle global" not in m)  # the worst first
    report.problems.extend(flagged[:MAX_GLOBAL_PROBLEMS])
    if len(flagged) > MAX_GLOBAL_PROBLEMS:
        report.problems.append(
            f"{label}: and {len(flagged) - MAX_GLOBAL_PROBLEMS} more pickle globals off the allowlist"
        )

    params = 0
    dtypes: dict[str, int] = {}
    unknown = 0
    for call in machine.tensors:
        dtype, shape = call.tensor  # type: ignore[misc]
        if shape is None:
            unknown += 1
            continue
        n = _numel(shape)
        params += n
        dtypes[dtype] = dtypes.get(dtype, 0) + n
    report.tensors = len(machine.tensors)
    report.parameters = params
    report.dtypes = dict(sorted(dtypes.items(), key=lambda kv: (-kv[1], kv[0])))
    if unknown:
        report.problems.append(
            f"{label}: {unknown} tensor(s) with a malformed shape are not counted in parameters"
        )
    report.storages = len(machine.storages)
    report.storage_bytes = sum(b for _, b in machine.storages.values())
    if root is not None:
        _walk(root, report, want_names=bool(machine.tensors))
    keys = set(report.top_keys) if root is not None and report.top_keys else machine.markers
    report.lightning = "pytorch-lightning_version" in keys or (
        "state_dict" in keys and bool(keys & {"callbacks", "optimizer_states", "loops", "lr_schedulers"})
    )
