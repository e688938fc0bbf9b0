"""Reading the small files beside checkpoints, and path containment: the one home of bounded reads.

Every reader here is bounded in bytes and turns what cannot be used into a one-line problem that names
the file, never an exception; the trainer's readers, which must stop on a bad file, raise their own
error class with the same line (``read_json_dict``). Standard library only, with orjson when present
(``loads_json``, ``fast_json``).
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from tui.core import readlog
from tui.core.text import first_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any

# orjson parses ~2x faster than json but its import costs ~3 ms of CPU beside what the core loads anyway
# (uuid, datetime, platform; ~10 ms alone), as much as `ls` of a small tree spends reading: a process
# imports it once it has handed ORJSON_AFTER_BYTES of JSON to the parsers (a 100-shard index and its
# headers are ~1.7 MB: 2 ms less with it).
ORJSON_AFTER_BYTES = 256 << 10
_NOT_YET: Any = object()
orjson: Any = _NOT_YET  # the module once imported; None where it is not installed
_json_bytes = 0

JSON_LIMIT = 16 << 20  # a config.json; callers pass more for tokenizers, trainer states, manifests
SMALL_TEXT_LIMIT = 4096  # pointer files: DeepSpeed's `latest`, a `.lock`
# Folders deeper than this below where a walk starts are not entered: a 990-level tree must not crash a
# recursive walk, nor cost a minute of system calls. Checkpoints nest a few levels (ZeRO: 3).
MAX_WALK_DEPTH = 64
# Walks that must see everything (sizes freed, recent writes, files to commit) go this deep: iterative,
# so only the time of one scandir per folder is at stake.
FULL_WALK_DEPTH = 4096


INT_LIMIT = 2**63  # a step, size or count beyond int64 is nobody's: a 401-digit "epoch" must not reach float()


def json_int(value: Any) -> int | None:
    """An integer read from JSON, or None: not an int (a bool is not one), or beyond +-2**63."""
    if isinstance(value, int) and not isinstance(value, bool) and -INT_LIMIT <= value < INT_LIMIT:
        return value
    return None


def json_number(value: Any) -> int | float | None:
    """A number read from JSON, or None: an int as ``json_int``, a float only when finite (1e999 parses as
    inf, and NaN or inf would sort anywhere)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return json_int(value)


def is_within(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies under it (lexically: resolve both first where links matter)."""
    return path == folder or folder in path.parents


def read_refusal(path: str | os.PathLike, root: Path, *, folder_ok: bool = False) -> str | None:
    """Why ``path`` must not be read as data of a checkpoint under ``root`` (realpath'd by the caller):
    it leads outside ``root`` once symlinks are resolved (on a shared disk, a planted link to someone's
    private file), or it is not a regular file (a FIFO or device would hang or never end; a folder only
    when ``folder_ok``). None when it may be read: a link that stays inside ``root`` is followed."""
    real = Path(os.path.realpath(path))
    if not is_within(real, root):
        if is_within(Path(os.path.abspath(path)), root):
            return f"is a symlink leading outside ROOT (to {real}), not read"
        return f"is outside ROOT ({root}), not read"
    try:
        mode = os.stat(real).st_mode
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return None
    kind = next((k for test, k in _KINDS if test(mode)), "special file")
    return f"is a {kind}, not a regular file; not read"


_KINDS = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "device"), (stat.S_ISBLK, "device"),
          (stat.S_ISSOCK, "socket"))


def allocated_bytes(st: os.stat_result) -> int | None:
    """The bytes a file occupies on disk (what deleting it frees): less than ``st_size`` for a sparse
    or compressed file. None where the platform does not say (no ``st_blocks``)."""
    blocks = getattr(st, "st_blocks", None)
    return blocks * 512 if isinstance(blocks, int) else None  # st_blocks counts 512-byte units (POSIX)


def open_regular_file(path: str | os.PathLike) -> tuple[int, int]:
    """``(fd, size)`` for a regular file, opened without blocking (a FIFO named like a checkpoint file must
    not hang us). Raises OSError, or ValueError for something that is not a regular file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if readlog.noting():  # a file that is missing or unreadable now may not be later
            readlog.note_failure(os.fspath(path), e)
        raise
    try:
        st = os.fstat(fd)
        if readlog.noting():
            readlog.note(os.fspath(path), st)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        return fd, st.st_size
    except BaseException:
        os.close(fd)
        raise


def is_folder(path: str | os.PathLike) -> bool:
    """``os.path.isdir(path)``, noted as a lookup while a scan records (``readlog.note_lookup``): a reader
    that decides by whether a folder exists must be asked again when that changes."""
    try:
        st: os.stat_result | None = os.stat(path)
    except (OSError, ValueError):
        st = None
    if readlog.noting():
        readlog.note_lookup(os.fspath(path), st)
    return st is not None and stat.S_ISDIR(st.st_mode)


def read_file(path: str | os.PathLike, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of a regular file (``read_bounded``: counted as read, never trusted
    from ``stat``, which says 0 for a device). Raises OSError, or ValueError for a FIFO, device or folder."""
    fd, size = open_regular_file(path)
    try:
        return read_bounded(fd, size, limit)
    finally:
        os.close(fd)


def walk(
    top: str | os.PathLike,
    *,
    max_depth: int = MAX_WALK_DEPTH,
    skipped: list[str] | None = None,
    unreadable: list[str] | None = None,
) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(top)`` top-down without following links, iterative and at most ``max_depth`` folders
    below ``top`` (Python 3.11's os.walk recurses: a deep tree raised RecursionError). Links to folders
    are listed in ``dirnames`` (as os.walk does) but never entered; callers may prune ``dirnames``.
    Folders left out for depth are appended to ``skipped``, folders that cannot be listed to
    ``unreadable`` (and passed over)."""
    stack = [(os.fspath(top), 0)]
    while stack:
        path, depth = stack.pop()
        dirs, files, real_dirs = [], [], set()
        try:
            with os.scandir(path) as it:
                for entry in it:
                    try:
                        is_dir = entry.is_dir()
                        if is_dir and not entry.is_symlink():
                            real_dirs.add(entry.name)
                    except OSError:
                        is_dir = False
                    (dirs if is_dir else files).append(entry.name)
        except OSError:
            if unreadable is not None:
                unreadable.append(path)
            continue
        yield path, dirs, files
        below = [d for d in dirs if d in real_dirs]
        if below and depth >= max_depth:
            if skipped is not None:
                skipped.append(path)
            continue
        stack.extend((os.path.join(path, d), depth + 1) for d in reversed(below))


def read_head(path: str | os.PathLike, n: int = 16) -> bytes:
    """The first ``n`` bytes of a regular file (what its format says about itself); b"" when it cannot be
    read or is not a regular file."""
    try:
        fd, _ = open_regular_file(path)
    except (OSError, ValueError):
        return b""
    try:
        return os.read(fd, n)
    except OSError:
        return b""
    finally:
        os.close(fd)


def read_bounded(fd: int, size: int, limit: int) -> bytes:
    """Up to ``limit`` + 1 bytes of ``fd`` (one more than allowed says "too big"), in reads sized by the
    ``size`` fstat gave: ``f.read(limit + 1)`` would allocate the whole limit (64 MiB) for a 20 KB file."""
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = os.read(fd, min(limit + 1 - total, max(size + 1 - total, 1 << 16)))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def load_json(path: Path | str, *, limit: int = JSON_LIMIT) -> tuple[Any, str | None]:
    """(data, None) or (None, "<name>: <problem>"); (None, None) when the file does not exist."""
    try:
        raw = read_file(path, limit)
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"{Path(path).name}: unreadable ({e.strerror or e})"
    except ValueError as e:  # a FIFO or a device named like our file: never read
        return None, f"{Path(path).name}: {e}"
    if len(raw) > limit:
        return None, f"{Path(path).name}: larger than {limit >> 20} MiB, not read"
    if not raw.strip():
        return None, f"{Path(path).name}: empty file"
    try:
        return loads_json(raw), None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        return None, f"{Path(path).name}: invalid JSON ({first_line(e)})"


# Digits -> "0", anything else -> " ": a run of 19 digits is then a plain substring search (a regex takes
# 15x longer on digit-dense files such as trainer_state.json).
_DIGITS_ONLY = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_RUN = b"0" * 19


def fast_json(nbytes: int) -> Any:
    """The orjson module for parsing ``nbytes`` more of JSON, or None (not installed, or this process has
    not parsed ``ORJSON_AFTER_BYTES`` yet, this call included): then the standard library parses."""
    global orjson, _json_bytes
    if orjson is _NOT_YET:
        _json_bytes += nbytes
        if _json_bytes < ORJSON_AFTER_BYTES:
            return None
        try:
            import orjson as module
        except ImportError:  # no wheel for this platform: the standard library parses everything
            module = None
        orjson = module
    return orjson


def loads_json(raw: bytes) -> Any:
    """``json.loads(raw)``, exactly (same values, same errors), 3-5x faster where orjson can say the same:
    orjson refuses NaN/Infinity, out-of-range floats, lone surrogates, a BOM, UTF-16 and deep nesting, and
    turns integers beyond 64 bits into floats; each of those (any run of 19 digits, for the last) is left
    to the standard library, which also words every error."""
    fast = fast_json(len(raw))
    if fast is not None and _LONG_RUN not in raw.translate(_DIGITS_ONLY):
        try:
            return fast.loads(raw)
        except fast.JSONDecodeError:
            pass
    return json.loads(raw)


def loads_json_of_strings(raw: bytes) -> Any:
    """``loads_json(raw)`` (the same values, the same errors) for a document whose bulk is strings, such as a
    shard index (tensor -> shard file): instead of scanning the text for runs of 19 digits (~1 ms per MB),
    orjson's result is checked for the floats it makes of integers beyond 64 bits, which costs next to
    nothing where containers hold only strings, integers, booleans and nulls."""
    fast = fast_json(len(raw))
    if fast is not None:
        try:
            value = fast.loads(raw)
        except fast.JSONDecodeError:
            pass
        else:
            if not _holds_big_float(value):
                return value
    return json.loads(raw)


_PLAIN = frozenset({str, int, bool, type(None)})
_BIG = float(1 << 63)  # orjson reads an integer outside [-2**63, 2**64) as a float at least this large


def _holds_big_float(value: Any) -> bool:
    """Whether ``value`` (parsed JSON) holds a float of magnitude >= 2**63: one that may have been an integer
    beyond 64 bits (a float literal that large also says yes: then the standard library parses, slower
    and as right). A container of plain values is passed over in one C-level pass."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is float:
            if abs(item) >= _BIG:
                return True
            continue
        if kind is dict:
            item = item.values()
        elif kind is not list:
            continue
        if _PLAIN.issuperset(map(type, item)):
            continue
        stack.extend(v for v in item if type(v) not in _PLAIN)
    return False


def _dumps_options(fast: Any) -> int:
    # orjson writes a dataclass, a datetime or a subclass of str/int/dict/list itself; the standard library
    # refuses or writes them otherwise: passed through, they raise and take the exact path.
    return fast.OPT_PASSTHROUGH_DATACLASS | fast.OPT_PASSTHROUGH_DATETIME | fast.OPT_PASSTHROUGH_SUBCLASS


def dumps_json(value: Any) -> str:
    """Compact JSON text of ``value`` that parses back to what ``json.dumps(value, separators=(",", ":"))``
    would: orjson's text (~5x faster) when it is ASCII and parses back equal to ``value`` (orjson writes
    NaN and infinities as null and differs on dict keys that are not strings), else the standard
    library's. Raises what ``json.dumps`` raises. What the standard library writes counts towards
    importing orjson (``fast_json``), as what it parses does."""
    fast = fast_json(0)
    if fast is not None:
        try:
            raw = fast.dumps(value, option=_dumps_options(fast))
        except fast.JSONEncodeError:  # lone surrogates, ints beyond 64 bits, non-str keys, other types
            raw = None
        # A tuple is written as a list, so a top-level one compares as a list (a nested one takes the
        # exact path: slower, still right).
        same = list(value) if type(value) is tuple else value
        if raw is not None and raw.isascii() and fast.loads(raw) == same:
            return raw.decode("ascii")
    text = json.dumps(value, separators=(",", ":"))
    if fast is None:
        fast_json(len(text))
    return text


def load_json_object(path: Path | str, *, limit: int = JSON_LIMIT) -> tuple[dict[str, Any] | None, list[str]]:
    """(the JSON object, []) or (None, [one-line problem]); (None, []) when the file does not exist."""
    data, problem = load_json(path, limit=limit)
    if problem is not None:
        return None, [problem]
    if data is not None and not isinstance(data, dict):
        return None, [f"{Path(path).name}: not a JSON object"]
    return data, []


def json_object(path: Path | str, *, limit: int = JSON_LIMIT) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is missing, unreadable, not JSON or not an object."""
    data, _ = load_json(path, limit=limit)
    return data if isinstance(data, dict) else None


def read_json_dict(
    path: Path | str, error: type[Exception], hint: str = "", *, limit: int = JSON_LIMIT
) -> dict[str, Any] | None:
    """The JSON object in ``path``, None when the file does not exist; raises ``error`` with one line
    ("<path>: <problem><hint>") when it exists but is not a readable JSON object."""
    data, problem = load_json(path, limit=limit)
    if problem is not None:
        raise error(f"{path}: {problem.partition(': ')[2]}{hint}")
    if data is not None and not isinstance(data, dict):
        raise error(f"{path}: not a JSON object{hint}")
    return data


def read_small_text(path: Path | str, limit: int = SMALL_TEXT_LIMIT) -> str | None:
    """The text of a small pointer file (undecodable bytes replaced); None when it is missing, unreadable,
    not a file or larger than ``limit``."""
    try:
        raw = read_file(path, limit)
    except (OSError, ValueError):
        return None
    return None if len(raw) > limit else raw.decode("utf-8", errors="replace")
