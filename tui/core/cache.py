"""A persistent cache of what readers compute from files: used only while every file it was read from is
unchanged, so it can make a command faster and never make its answer different.

API::

    memo(reader, files, compute, *, encode=None, decode=None) -> value
        # compute() when any of ``files`` changed since it was cached, else the cached value
    stat_of(path) -> os.stat_result | None
    shared() -> SummaryCache        # the process's cache, configured from the environment
    configure(enabled=None, directory=None) -> SummaryCache   # --no-cache, tests
    SummaryCache.flush()            # write what changed (memo flushes on exit by itself)

What makes a hit: a reader name (with a version: bump it when its output changes) and, for every file it
read, (name, device, inode, size, mtime_ns, ctime_ns) exactly as now. A touch, a truncate, an in-place
rewrite, a replace by rename (new inode), an attribute change (ctime) are all misses and the file is read
again. A key whose file changed in the last ``RACY_SECONDS`` is never written to disk and is used from
memory for that long only: a file rewritten twice within one timestamp tick with the same size would
otherwise look unchanged (git's "racily clean" problem).
A reader cached here must be a pure function of the files it names: anything it learns from elsewhere
(a sibling folder, the clock, a process table) stays outside, computed on every call.

Storage: ``$XDG_CACHE_HOME/ckpt-tui/v1/`` (``~/.cache/ckpt-tui/v1/``), one file per folder whose files
were read (a checkpoint's readers all land in one file, so a repeat scan reads one cache file per
checkpoint). Chosen over sqlite because home folders on clusters are often NFS or Lustre, where sqlite's
locks are unreliable and WAL mode does not work at all; a file per folder needs no locks:

* each file is written to a temp name and renamed over the old one (atomic, also on NFS); two processes
  writing the same folder's file lose one side's new entries (a later miss), never mix them;
* a header line holds a CRC32 of the body: a torn, truncated or edited file is ignored and rewritten;
* total size is capped (``CKPT_TUI_CACHE_MAX_MB``, default 64): at most once an hour a sweep deletes
  the least recently used files (a hit refreshes a file's mtime once a day) down to 3/4 of the cap.

Off: ``CKPT_TUI_NO_CACHE=1`` or ``--no-cache``. Off still memoises within the process (so one command
reads a header once), nothing is read from or written to disk. Any error of the cache itself (no
space, read-only home, permissions) turns it off for the process silently: it is only ever a shortcut.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import stat
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

from tui.core.files import loads_json

ENV_DISABLE = "CKPT_TUI_NO_CACHE"
ENV_MAX_MB = "CKPT_TUI_CACHE_MAX_MB"
FORMAT = "ckpt-tui-cache 1"  # the first line of every cache file, before its CRC32
RACY_SECONDS = 2.0
SWEEP_EVERY_SECONDS = 3600
TOUCH_AFTER_SECONDS = 86400
MAX_BUCKET_BYTES = 4 << 20  # one folder's entries; a bigger one is not written
MAX_ENTRIES_PER_BUCKET = 256
MAX_MEMORY_BUCKETS = 20_000  # folders kept in memory by a long-lived process (the app)

# (name, dev, ino, size, mtime_ns, ctime_ns); the stat part is None for a file that does not exist.
FileKey = list
Stat = os.stat_result


def stat_of(path: str | os.PathLike) -> Stat | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _key_of(name: str, st: Stat | None) -> FileKey:
    if st is None:
        return [name, None]
    return [name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class _Bucket:
    __slots__ = ("entries", "dirty", "mtime")

    def __init__(self, entries: dict[str, tuple[str, str, float]], mtime: float | None) -> None:
        # reader -> (keys as JSON text, value as JSON text, until when a racy entry may be used; 0: not racy)
        self.entries = entries
        self.dirty = False
        self.mtime = mtime  # of the file it was loaded from (None: not on disk)


class SummaryCache:
    """One process's view of the cache directory (``directory=None``: memory only)."""

    def __init__(self, directory: str | None, *, max_bytes: int = 64 << 20) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    # --- lookups ------------------------------------------------------------------------------------

    def get(self, reader: str, folder: str, keys: str) -> str | None:
        """The value text cached for ``reader`` in ``folder`` under exactly ``keys`` (JSON text), or None."""
        entry = self._bucket(folder).entries.get(reader)
        if entry is not None and entry[0] == keys and (not entry[2] or time.monotonic() < entry[2]):
            self.hits += 1
            return entry[1]
        self.misses += 1
        return None

    def put(self, reader: str, folder: str, keys: list[FileKey], value: str) -> None:
        """Remember ``value``; a racy key (a file changed within RACY_SECONDS) only in memory and only
        for that long: one command still reads each file once, and nothing racy reaches the disk."""
        racy = _racy(keys)
        bucket = self._bucket(folder)
        with self._lock:
            if len(bucket.entries) >= MAX_ENTRIES_PER_BUCKET and reader not in bucket.entries:
                bucket.entries.pop(next(iter(bucket.entries)))
            bucket.entries[reader] = (_keys_text(keys), value, time.monotonic() + RACY_SECONDS if racy else 0)
            bucket.dirty = bucket.dirty or not racy

    def _bucket(self, folder: str) -> _Bucket:
        bucket = self._buckets.get(folder)
        if bucket is None:
            bucket = self._load(folder)
            with self._lock:
                if len(self._buckets) >= MAX_MEMORY_BUCKETS:
                    self._flush_locked()
                    self._buckets.clear()
                bucket = self._buckets.setdefault(folder, bucket)
        return bucket

    # --- disk -----------------------------------------------------------------------------------------

    def _path(self, folder: str) -> str:
        assert self.directory is not None
        digest = hashlib.sha1(os.fsencode(folder)).hexdigest()
        return os.path.join(self.directory, digest[:2], digest[2:] + ".cache")

    def _load(self, folder: str) -> _Bucket:
        if self.directory is None:
            return _Bucket({}, None)
        path = self._path(folder)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return _Bucket({}, None)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BUCKET_BYTES:
                return _Bucket({}, None)
            raw = os.read(fd, st.st_size + 1)
            mtime = st.st_mtime
        except OSError:
            return _Bucket({}, None)
        finally:
            os.close(fd)
        entries = _decode_bucket(raw, folder)
        if entries is None:  # corrupt or foreign: start afresh; the next flush replaces it
            return _Bucket({}, None)
        if time.time() - mtime > TOUCH_AFTER_SECONDS:
            try:
                os.utime(path)  # recently used: the sweep keeps it
            except OSError:
                pass
        return _Bucket(entries, mtime)

    def flush(self) -> None:
        """Write every folder whose entries changed (atomic per file)."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self.directory is None:
            return
        wrote = False
        for folder, bucket in self._buckets.items():
            if not bucket.dirty:
                continue
            bucket.dirty = False
            try:
                self._write(folder, bucket)
                wrote = True
            except (OSError, ValueError, TypeError, RecursionError):
                self.directory = None  # read-only, full, or not ours: stop trying for this process
                return
        if wrote:
            self._maybe_sweep()

    def _write(self, folder: str, bucket: _Bucket) -> None:
        lines = [json.dumps(folder)]
        lines += [
            f"{reader}\t{keys}\t{value}" for reader, (keys, value, racy) in bucket.entries.items() if not racy
        ]
        body = "\n".join(lines).encode("utf-8", "surrogatepass")
        if len(body) > MAX_BUCKET_BYTES:
            return
        path = self._path(folder)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(f"{FORMAT} {zlib.crc32(body):08x}\n".encode() + body)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _maybe_sweep(self) -> None:
        assert self.directory is not None
        stamp = os.path.join(self.directory, "last-sweep")
        try:
            if time.time() - os.stat(stamp).st_mtime < SWEEP_EVERY_SECONDS:
                return
        except OSError:
            pass
        try:
            with open(stamp, "wb"):
                pass
        except OSError:
            return
        sweep(self.directory, self.max_bytes)


def sweep(directory: str, max_bytes: int) -> int:
    """Delete the least recently used cache files until the total is under 3/4 of ``max_bytes``; also
    stale temp files of writers that died. Returns the bytes left."""
    files: list[tuple[float, int, str]] = []
    now = time.time()
    try:
        subdirs = [e.path for e in os.scandir(directory) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return 0
    for sub in subdirs:
        try:
            with os.scandir(sub) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if e.name.endswith(".tmp") and now - st.st_mtime > 600:
                        _unlink(e.path)
                    elif e.name.endswith(".cache"):
                        files.append((st.st_mtime, st.st_size, e.path))
        except OSError:
            continue
    total = sum(size for _, size, _ in files)
    if total <= max_bytes:
        return total
    for _, size, path in sorted(files):
        if total <= max_bytes * 3 // 4:
            break
        if _unlink(path):
            total -= size
    return total


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


def _decode_bucket(raw: bytes, folder: str) -> dict[str, tuple[str, str, float]] | None:
    """Entries of a cache file, or None when it is not an intact file of ours for ``folder``.

    Layout: ``ckpt-tui-cache N <crc32 of the rest>``, the folder as a JSON string, then one line per
    entry: ``reader TAB keys TAB value``, keys and value as JSON text (which never holds a raw tab or
    newline). Keys are compared as text and a value is parsed only when used."""
    head, sep, body = raw.partition(b"\n")
    parts = head.decode("ascii", "replace").rsplit(" ", 1)
    if not sep or len(parts) != 2 or parts[0] != FORMAT:
        return None
    try:
        if int(parts[1], 16) != zlib.crc32(body):
            return None
        lines = body.decode("utf-8", "surrogatepass").split("\n")
        if json.loads(lines[0]) != folder:
            return None
    except (ValueError, RecursionError):
        return None
    entries: dict[str, tuple[str, str, float]] = {}
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) != 3:
            return None
        entries[fields[0]] = (fields[1], fields[2], 0)
    return entries


def _keys_text(keys: list[FileKey]) -> str:
    """``keys`` as compact JSON (what ``json.dumps`` writes, built directly: this runs per lookup)."""
    parts = []
    for k in keys:
        name = _json_string(k[0])
        parts.append(f"[{name},null]" if len(k) == 2 else f"[{name},{k[1]},{k[2]},{k[3]},{k[4]},{k[5]}]")
    return f"[{','.join(parts)}]"


def _racy(keys: list[FileKey]) -> bool:
    """A key too recent to trust (or from the future: another host's clock)."""
    limit = time.time_ns() - int(RACY_SECONDS * 1e9)
    return any(len(k) > 2 and max(k[4], k[5]) > limit for k in keys)


# --- the process's cache ----------------------------------------------------------------------------------

_shared: SummaryCache | None = None
_shared_lock = threading.Lock()


def default_directory() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ckpt-tui", "v1")


def _env_max_bytes() -> int:
    try:
        return max(1, int(os.environ.get(ENV_MAX_MB, "64"))) << 20
    except ValueError:
        return 64 << 20


def configure(*, enabled: bool | None = None, directory: str | None = None) -> SummaryCache:
    """Replace the process's cache (flushing the old one). ``enabled=None``: from the environment."""
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.flush()
        if enabled is None:
            enabled = os.environ.get(ENV_DISABLE, "").strip().lower() in ("", "0", "false", "no")
        _shared = SummaryCache(
            (directory or default_directory()) if enabled else None, max_bytes=_env_max_bytes()
        )
        return _shared


def shared() -> SummaryCache:
    return _shared if _shared is not None else configure()


@atexit.register
def _flush_at_exit() -> None:
    if _shared is not None:
        _shared.flush()


def memo(
    reader: str,
    files: Sequence[tuple[str | os.PathLike, Stat | None]],
    compute: Callable[[], Any],
    *,
    encode: Callable[[Any], Any] | None = None,
    decode: Callable[[Any], Any] | None = None,
) -> Any:
    """``compute()``, or its cached result while every one of ``files`` (path, and its stat or None to
    stat it now) is unchanged. The entry lives with the folder of the first file. ``encode`` turns the
    result into JSON types and ``decode`` turns those back (default: the result is JSON types already).
    A cached value is stored as JSON text and parsed on every hit, so callers always get fresh objects
    that they may change."""
    if not files:
        return compute()
    cache = shared()
    first = os.fspath(files[0][0])
    folder = os.path.dirname(first)
    keys = [_key_of(_name_in(folder, os.fspath(p)), st if st is not None else stat_of(p)) for p, st in files]
    text = cache.get(reader, folder, _keys_text(keys))
    if text is not None:
        try:
            value = loads_json(text.encode("utf-8", "surrogatepass"))
            return decode(value) if decode is not None else value
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
            pass  # an entry of another layout: read again
    result = compute()
    try:
        text = json.dumps(encode(result) if encode is not None else result, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return result
    cache.put(reader, folder, keys, text)
    return result


def _name_in(folder: str, path: str) -> str:
    return path[len(folder) + 1 :] if path.startswith(folder + os.sep) else path
