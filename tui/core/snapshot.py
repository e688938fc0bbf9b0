"""A whole scan of a root, remembered: a repeat ``ls`` (or app start) checks the scan's inputs instead of
reading them, and answers exactly what the scan answered.

What keeps a snapshot valid: every folder the scan listed (an entry added, removed or renamed changes
a folder's mtime) and every file it stat'd or read (the walk's stats, each file a reader opened, each file
the summary cache answered for: ``tui.core.readlog``) still has the same (device, inode, size, mtime_ns,
ctime_ns, blocks); so does every link among the entries of a listed folder (what a link is follows its
target, which may lie anywhere: a dangling one is noted as missing) and every name a reader looked up
outside the listed folders (through a linked folder, in ROOT's parent: found or not, and why not when a
file could not be opened); the same user and groups ask (``_who``); and the same code read them (this
package's version, the interpreter's, and its core modules' sizes and mtimes).
Trusted, not checked (docs/SECURITY.md): that adding or removing an entry changes a folder's mtime (not so
on some FUSE mounts of object stores: turn the cache off there), and that the file server's clock agrees
with this host's within ``cache.RACY_SECONDS``.
One check against a stat per path: a 1,000-checkpoint root is ~7,600 stats, where a scan also opens,
reads and parses. Who holds a run's ``.lock`` depends on a process table and the clock, not on files: it
is judged again on every use and the problem lines it words are rewritten.

Never written: for a scan that was cancelled or left unfinished, saw a path change while it ran or
failed to open or list something for a reason that may pass (EIO, ESTALE, EMFILE: ``ReadLog.unsteady``),
or saw anything changed in the last ``cache.RACY_SECONDS`` (a file rewritten twice within one timestamp
tick would look unchanged: the summary cache's rule); nor with the cache off.
The scan falls back to reading (with the summary cache) on any mismatch, a corrupt or foreign file, or
a snapshot of another root. Used by ``ls`` and the app, which browse; ``rm``, ``prune`` and ``slim``
plan from a walk of their own.

Stored like the cache's other files (``cache.write_file``): a header line with a CRC32, then a zlib body:
one line of JSON (root, code stamp, records, errors, lock lines, the length of the paths and which paths
did not exist), the paths seen (file system bytes, NUL-separated), then their keys, 48 bytes each
(``_KEY``): checking 7,600 keys packed this way costs a fraction of parsing them as JSON.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from collections.abc import Callable, Iterator

from tui import __version__

try:  # the builtin module: importing hashlib loads OpenSSL, ~2 ms of every command
    from _sha1 import sha1
except ImportError:
    from hashlib import sha1

from tui.core import cache, readlog
from tui.core.files import dumps_json, loads_json
from tui.core.model import CheckpointInfo
from tui.core.process import lock_text, uncommitted_problem

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

FORMAT = "ckpt-tui-snapshot 3"
_KIND = b"snapshot\0"  # what the file's name is derived from, before the root: never a folder's name
MAX_TEXT = 256 << 20  # what a snapshot may expand to
# Each path's key, packed: device, inode, size (unsigned), mtime_ns, ctime_ns (signed: before 1970), blocks.
_KEY = struct.Struct("<QQQqqQ")
_GONE = bytes(_KEY.size)  # the key of a path that did not exist (its index is in "gone")


def iter_checkpoints(
    root: str | os.PathLike,
    *,
    cancelled: Callable[[], bool] = lambda: False,
    errors: list[str] | None = None,
    processes: int = 1,
) -> Iterator[CheckpointInfo]:
    """``scan.iter_checkpoints(root)``: from the snapshot of its last whole scan while that is valid (the walk
    and its readers are then never imported), else from a scan, which is then remembered."""
    root = os.path.abspath(os.fspath(root))
    errors = errors if errors is not None else []
    replayed = replay(root)
    if replayed is not None:
        errors.extend(replayed[1])
        yield from replayed[0]
        return
    from tui.core import scan  # the walk and every reader: tens of milliseconds of imports, not needed above

    first_error = len(errors)
    with readlog.recording() as log:
        infos = []
        for info in scan.iter_checkpoints(root, cancelled=cancelled, errors=errors, log=log, processes=processes):
            infos.append(info)
            yield info
        save(root, log, infos, errors[first_error:])


def save(root: str, log: readlog.ReadLog, infos: list[CheckpointInfo], errors: list[str]) -> bool:
    """Remember a whole scan; False when there is no cache, or the scan is not one to remember."""
    if cache.shared().directory is None or not log.finished:
        return False
    log.settle()
    if log.unsteady or _racy(log.seen.values(), log.started_ns):
        return False
    where = {id(info): n for n, info in enumerate(infos)}
    locks: dict[str, list[list[int]]] = {}
    for lock_path, info, index in log.lock_lines:
        if id(info) not in where:
            return False
        locks.setdefault(lock_path, []).append([where[id(info)], index])
    paths = _encoded(log.seen)
    try:
        keys = b"".join(_KEY.pack(*key) if key is not None else _GONE for key in log.seen.values())
    except struct.error:  # a stat field beyond 64 bits: nothing to remember it by
        return False
    head = {
        "root": root,
        "code": code_stamp(),
        "who": _who(),
        "infos": [info.to_json() for info in infos],
        "errors": errors,
        "locks": [[path, lines] for path, lines in locks.items()],
        "paths": len(paths),
        "gone": [n for n, key in enumerate(log.seen.values()) if key is None],
    }
    packed = zlib.compress(b"".join((dumps_json(head).encode("ascii"), b"\n", paths, keys)), 1)
    if len(packed) > cache.shared().max_bytes // 2:
        return False
    try:
        cache.write_file(_file_of(root), FORMAT, packed)
    except OSError:
        return False
    return True


def _encoded(paths) -> bytes:
    """The paths NUL-separated (no path holds a NUL), each as ``os.fsencode`` makes it: UTF-8 (and
    surrogateescape, for bytes that are not) encodes character by character, so the joined text is
    encoded at once (10,000 checkpoints: 76,000 paths, ~15 ms one by one)."""
    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    if encoding.lower().replace("-", "") == "utf8":
        return "\0".join(paths).encode(encoding, errors)
    return b"\0".join(os.fsencode(path) for path in paths)


def remembered(root: str | os.PathLike) -> bool:
    """A snapshot of ``root`` is on disk (whether it still holds is for ``replay`` to say): one stat."""
    if cache.shared().directory is None:
        return False
    return os.path.exists(_file_of(os.path.abspath(os.fspath(root))))


def _file_of(root: str) -> str:
    """The snapshot file of ``root`` (absolute), among the cache's files."""
    return cache.shared().file_for(root, _KIND)


def replay(root: str) -> tuple[list[CheckpointInfo], list[str]] | None:
    """(infos, errors) of the last scan of ``root`` when every path it saw is unchanged, else None."""
    if cache.shared().directory is None:
        return None
    loaded = _load(_file_of(root))
    if loaded is None:
        return None
    body, seen = loaded
    if not isinstance(body, dict) or body.get("root") != root or body.get("code") != code_stamp():
        return None
    if body.get("who") != _who():  # what may be read (a "cannot read" problem) depends on who asks
        return None
    try:
        if not _unchanged(seen[: body["paths"]], seen[body["paths"] :], set(body["gone"])):
            return None
        infos = [CheckpointInfo.from_json(d) for d in body["infos"]]
        errors = [str(e) for e in body["errors"]]
        for lock_path, lines in body["locks"]:
            holder = lock_text(lock_path)
            if holder is None:
                return None
            for n, index in lines:
                infos[n].problems[index] = uncommitted_problem(holder)
    except (KeyError, TypeError, ValueError, IndexError):
        return None  # another layout: read the tree
    return infos, errors


def _unchanged(paths: bytes, keys: bytes, gone: set[int]) -> bool:
    """Every path (NUL-separated) has its key now (``_KEY`` each; ``gone``: the indexes of paths that did
    not exist, which still must not)."""
    stat, pack, key_of = os.stat, _KEY.pack, readlog.key_of
    now = []
    for n, path in enumerate(paths.split(b"\0")):
        try:
            st = stat(path)
        except (OSError, ValueError):
            if n not in gone:
                return False
            now.append(_GONE)
            continue
        if n in gone:
            return False
        now.append(pack(*key_of(st)))
    return b"".join(now) == keys


def _racy(keys, started_ns: int) -> bool:
    """Anything changed too recently to trust its timestamps (the summary cache's rule)."""
    limit = cache.racy_after(started_ns)
    return any(key is not None and max(key[3], key[4]) > limit for key in keys)


def _load(path: str) -> tuple[Any, bytes] | None:
    """(the JSON head, the paths and keys after it) of an intact snapshot file, else None."""
    raw = cache.read_file(path, cache.shared().max_bytes)
    if raw is None:
        return None
    head, sep, packed = raw.partition(b"\n")
    if not sep or head != f"{FORMAT} {zlib.crc32(packed):08x}".encode():
        return None
    try:
        inflate = zlib.decompressobj()
        body = inflate.decompress(packed, MAX_TEXT)
        if inflate.unconsumed_tail or not inflate.eof:
            return None
        text, _, seen = body.partition(b"\n")  # compact JSON never holds a raw newline
        return loads_json(text), seen
    except (ValueError, RecursionError, zlib.error):
        return None


def _who() -> list[Any]:
    """The user and groups this process reads as: a cache directory shared by two users (or reached by
    ``sudo`` keeping HOME) must not hand one the answers of files only the other may read."""
    try:
        return [os.geteuid(), os.getegid(), sorted(os.getgroups())]
    except (AttributeError, OSError):  # no POSIX ids (Windows)
        return []


_stamp: str | None = None


def code_stamp() -> str:
    """This package's version, the interpreter's and the size and mtime of every module under ``tui/core``:
    an upgrade or an edit makes every snapshot written before it unusable."""
    global _stamp
    if _stamp is None:
        top = os.path.dirname(os.path.abspath(__file__))
        parts, stack = [__version__, sys.version], [top]  # the interpreter words some problems (JSON errors)
        while stack:
            folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name.endswith(".py") and entry.is_file():
                    st = entry.stat()
                    parts.append(f"{entry.path[len(top):]}:{st.st_size}:{st.st_mtime_ns}")
                elif entry.is_dir() and entry.name != "__pycache__":
                    stack.append(entry.path)
        _stamp = sha1("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return _stamp
