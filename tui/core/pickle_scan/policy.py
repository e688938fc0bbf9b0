"""Which globals a pickle may name: the allowlist and ``classify_global``.

Every ``module.name`` a pickle would import is listed in ``globals``. Those outside the allowlist
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
  layouts, memory formats and ``torch.device``; DeepSpeed's ``fragment_address`` namedtuple; the classes
  of a torch DCP ``.metadata`` (``dcp_names.DCP_METADATA_GLOBALS``).
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

from tui.core.pickle_scan.dcp_names import DCP_METADATA_GLOBALS
from tui.core.pickle_scan.torch_names import TORCH_DTYPE_NAMES

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
    | DCP_METADATA_GLOBALS
    | {f"torch.{n}" for n in TORCH_DTYPE_NAMES}
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
