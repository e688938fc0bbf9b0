"""Which globals a pickle may name and call: ``classify_global`` and ``may_call``.

Exact names only (``allowlist``): a global is allowed when its ``module.qualname`` is listed, nothing is
allowed for its namespace or its spelling. ``torch.distributed.elastic.multiprocessing.subprocess_handler.
subprocess_handler.Popen`` is ``subprocess.Popen`` and ``torch.utils.benchmark.Timer`` runs code: neither
is listed, so both are flagged. Every global off the list goes to ``unsafe_globals`` with a problem, in
two wordings:

* "unsafe pickle global os.system (would run code on load)": names known to run code or reach it:
  ``os``, ``subprocess``, ``builtins.eval``/``exec``/``getattr``/``__import__``/``open``, ``sys``,
  ``importlib``, ``pickle``, ``runpy`` and similar modules, any dotted name through one of them or through a
  dunder (``torch.serialization.os.system``, ``Module.__init__.__globals__``), and any name whose last part is
  a known runner (``Popen``, ``system``, ``run``, ``Timer``, ``runstring``...) wherever it lives.
* "pickle global x.Y is not on the allowlist (loading imports it and may run its code)": everything else,
  e.g. a user's ``__main__.Model`` or ``functools.partial``.

``may_call`` tells the machine which allowed globals a pickle may *call* (``REDUCE``); the classes in
``allowlist.REBUILT`` may only be rebuilt without their constructor (see ``allowlist``).
"""

from __future__ import annotations

from tui.core.pickle_scan.allowlist import CALLABLE, REBUILT

_UNSAFE_MODULES = frozenset(
    "os posix nt subprocess _posixsubprocess sys shutil socket _socket importlib runpy pty webbrowser "
    "ctypes _ctypes multiprocessing _multiprocessing code codeop pdb bdb marshal pickle _pickle cPickle "
    "dill cloudpickle joblib types operator _operator io _io tempfile signal threading _thread "
    "asyncio urllib urllib2 http httplib ftplib smtplib telnetlib requests pip setuptools distutils "
    "zipimport pkgutil imp commands popen2 timeit trace cProfile profile inspect gc atexit sysconfig "
    "site ensurepip venv xmlrpc socketserver ssl select selectors mmap resource fcntl termios tty "
    "posixpath ntpath glob fnmatch functools subprocess_handler builtins __builtin__ __builtins__".split()
)
_SAFE_BUILTINS = frozenset(
    "set frozenset tuple list dict int float str bytes bytearray complex slice range bool object".split()
)
# last name parts that run code or commands wherever they are re-exported from
_RUNNERS = frozenset(
    "Popen SubprocessHandler Timer system popen spawn spawnl spawnv execv execve execl run call check_call "
    "check_output getoutput getstatusoutput eval exec execfile compile __import__ import_module "
    "runstring exec_command run_command runcode runsource run_path run_module load loads load_module "
    "rmtree remove unlink open urlopen".split()
)


def classify_global(module: str, name: str) -> str:
    """``"ok"`` (listed exactly), ``"unsafe"`` (known to run code) or ``"unlisted"`` (anything else)."""
    full = f"{module}.{name}"
    if full in CALLABLE or full in REBUILT:
        return "ok"
    names = name.split(".")
    parts = module.split(".") + names
    if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
        return "unlisted"  # a py2 spelling of a listed builtin
    if (
        any(p in _UNSAFE_MODULES for p in parts)
        or any(p.startswith("__") for p in names)
        or names[-1] in _RUNNERS
    ):
        return "unsafe"
    return "unlisted"


def may_call(full: str) -> bool:
    """Whether a pickle may call the allowed global ``module.qualname`` (not only rebuild it)."""
    return full in CALLABLE
