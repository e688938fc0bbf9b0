"""A persistent cache of what readers compute from files: used only while every file it was read from is
unchanged, so it can make a command faster and never make its answer different.

API::

    memo(reader, files, compute, *, encode=None, decode=None) -> value
        # compute() when any of ``files`` changed since it was cached, else the cached value
    stat_of(path) -> os.stat_result | None
    known_stats(path -> walk_key(stat)) context   # memo takes stats from the scan's walk, not the filesystem
    shared() -> SummaryCache        # the process's cache, configured from the environment
    configure(enabled=None, directory=None) -> SummaryCache   # --no-cache, tests
    SummaryCache.use_pack(root)     # a scan's folders in one file (iter_checkpoints calls it)
    SummaryCache.flush()            # write what changed (memo flushes on exit by itself)

What makes a hit: a reader name (with a version: bump it when its output changes) and, for every file it
read, (name, device, inode, size, mtime_ns, ctime_ns) exactly as now. A touch, a truncate, an in-place
rewrite, a replace by rename (new inode), an attribute change (ctime) are all misses and the file is read
again. A key whose file changed in the last ``RACY_SECONDS`` is never written to disk and is used from
memory for that long only: a file rewritten twice within one timestamp tick with the same size would
otherwise look unchanged (git's "racily clean" problem).
A reader cached here must be a pure function of the files it names: anything it learns from elsewhere
(a sibling folder, the clock, a process table) stays outside, computed on every call.

Storage: ``$XDG_CACHE_HOME/ckpt-tui/v1/`` (``~/.cache/ckpt-tui/v1/``). A scan keeps every folder under
its root in one "pack" file (``use_pack``: read once, written once; creating a file per checkpoint was
most of a first scan's time); an ``ls`` of a sub-folder reads the nearest ancestor's pack. Folders read
outside a scan (``inspect``) get a file each, and a pack over half the size cap is written as a file per
folder; a pack's body is zlib-compressed (~20x). Chosen over sqlite because home folders on clusters are
often NFS or Lustre, where sqlite's locks are unreliable and WAL mode does not work at all; a file per
folder needs no locks:

* each file is written to a temp name and renamed over the old one (atomic, also on NFS); two processes
  writing the same file lose one side's new entries (a later miss), never mix them;
* a header line holds a CRC32 of the body: a torn, truncated or edited file is ignored and rewritten;
* total size is capped (``CKPT_TUI_CACHE_MAX_MB``, default 64): at most once an hour a sweep deletes
  the least recently used files (a hit refreshes a file's mtime once a day) down to 3/4 of the cap.

The whole answer of a scan is remembered beside these entries by ``tui.core.snapshot`` (``write_file`` /
``read_file`` below), under the same rules: racy keys, CRC, size cap, sweep.

Off: ``CKPT_TUI_NO_CACHE=1`` or ``--no-cache``. Off still memoises within the process (so one command
reads a header once), nothing is read from or written to disk. Any error of the cache itself (no
space, read-only home, permissions) turns it off for the process silently: it is only ever a shortcut.
"""

from __future__ import annotations

import _thread  # threading's Lock, local and get_ident, without importing threading (~1 ms of every start)
import atexit
import json
import math
import os
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from json.encoder import encode_basestring_ascii as _json_string

try:  # the builtin module: importing hashlib loads OpenSSL, ~2 ms of every command
    from _sha1 import sha1
except ImportError:
    from hashlib import sha1

from tui.core import readlog
from tui.core.cache_files import (  # noqa: F401  (FORMAT, sweep, ... are this module's API too)
    _PACK,
    FORMAT,
    MAX_PACK_TEXT,
    PACK_FORMAT,
    TOUCH_AFTER_SECONDS,
    _decode_bucket,
    _decode_pack,
    _entry_lines,
    _is_under,
    _pack_pieces,
    _read_cache_file,
    _write_cache_file,
    sweep,
)
from tui.core.files import dumps_json, loads_json

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any

ENV_DISABLE = "CKPT_TUI_NO_CACHE"
ENV_MAX_MB = "CKPT_TUI_CACHE_MAX_MB"
RACY_SECONDS = 2.0
SUBDIRS_SECONDS = 2.0  # how long a listing of the cache directory's subfolders is trusted (_cache_subdirs)
SWEEP_EVERY_SECONDS = 3600
MAX_BUCKET_BYTES = 4 << 20  # one folder's entries; a bigger one is not written
MAX_ENTRIES_PER_BUCKET = 256
# Folders kept in memory by a long-lived process (the app), ~4 KB each for a checkpoint. Past it, what
# changed is written and the folders outside the scanned root are forgotten (_make_room); the root's pack
# is kept whole (it is written from memory) and its folders past the cap are used for one lookup: a root
# with more checkpoint folders than this has that many cached and reads the rest every time.
MAX_MEMORY_BUCKETS = 20_000

# (name, dev, ino, size, mtime_ns, ctime_ns); the stat part is None for a file that does not exist.
FileKey = list
Stat = os.stat_result


def stat_of(path: str | os.PathLike) -> Stat | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


_walk = _thread._local()


def walk_key(st: Stat) -> tuple[int, int, int, int, int]:
    """What ``memo`` keys a file by, of a stat the walk made: plain ints, cheap to hand to a forked reader."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@contextmanager
def known_stats(stats: dict[str, tuple[int, int, int, int, int]]) -> Iterator[None]:
    """While inside, ``memo`` on this thread takes a file's stat from ``stats`` (path -> ``walk_key`` of what
    the scan's walk saw moments ago) instead of asking the filesystem again: a round trip per file on NFS,
    and in the app a GIL hand-off to the UI thread per system call. A file changed since the walk is keyed
    by its older stat, which the next run finds changed: it is read again, never answered from the cache."""
    previous = getattr(_walk, "stats", None)
    _walk.stats = stats
    try:
        yield
    finally:
        _walk.stats = previous


def _key_of(name: str, st: Stat | None) -> FileKey:
    if st is None:
        return [name, None]
    return [name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class _Bucket:
    __slots__ = ("entries", "dirty", "used")

    def __init__(self, entries: dict[str, tuple[str, str, float]], *, used: bool = True) -> None:
        # reader -> (keys as JSON text, value as JSON text, until when a racy entry may be used; 0: not racy)
        self.entries = entries
        self.dirty = False
        self.used = used  # looked up by this process (a folder loaded with a pack is not, until then)

    def keep(self, reader: str, entry: tuple[str, str, float]) -> None:
        """``reader``'s entry, the oldest one out when the folder holds MAX_ENTRIES_PER_BUCKET (lock held)."""
        if len(self.entries) >= MAX_ENTRIES_PER_BUCKET and reader not in self.entries:
            self.entries.pop(next(iter(self.entries)))
        self.entries[reader] = entry


class SummaryCache:
    """One process's view of the cache directory (``directory=None``: memory only)."""

    def __init__(self, directory: str | None, *, max_bytes: int = 64 << 20) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._buckets: dict[str, _Bucket] = {}
        self._packs: set[str] = set()  # roots whose folders are kept in one file (use_pack)
        self._lock = _thread.allocate_lock()
        self._full: list[str] = []  # at MAX_MEMORY_BUCKETS with only these packs' folders (_make_room)
        self.held = False  # a forked reader's copy (hold_writes): it writes nothing, whatever it holds
        self._subdirs: tuple[float, frozenset[str]] = (-math.inf, frozenset())  # (when listed, names)
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

    def put(self, reader: str, folder: str, keys: list[FileKey], value: str, keys_text: str | None = None) -> None:
        """Remember ``value``; a racy key (a file changed within RACY_SECONDS) only in memory and only
        for that long: one command still reads each file once, and nothing racy reaches the disk.
        ``keys_text``: ``keys`` as the lookup wrote them (``_keys_text``), when the caller has it."""
        racy = _racy(keys)
        bucket = self._bucket(folder)
        with self._lock:
            text = keys_text if keys_text is not None else _keys_text(keys)
            bucket.keep(reader, (text, value, time.monotonic() + RACY_SECONDS if racy else 0))
            bucket.dirty = bucket.dirty or not racy

    def _bucket(self, folder: str) -> _Bucket:
        bucket = self._buckets.get(folder)
        if bucket is None:
            bucket = self._load(folder)
            with self._lock:
                if not self.held and len(self._buckets) >= MAX_MEMORY_BUCKETS and not any(
                    _is_under(folder, r) for r in self._full
                ):
                    self._make_room(folder)
                # a reader keeps every folder past the cap: making room writes files; its folders go back
                if self.held or len(self._buckets) < MAX_MEMORY_BUCKETS:
                    bucket = self._buckets.setdefault(folder, bucket)
        bucket.used = True
        return bucket

    def _make_room(self, folder: str) -> None:
        """Write what changed, then forget every folder but those of the packs ``folder`` is under (a
        forgotten pack is loaded again by its next ``use_pack``). A pack is written from memory: forgetting
        part of one dropped it from its file, and every scan of a root past the cap read all of it again."""
        self._flush_locked()
        keep = [r for r in self._packs if _is_under(folder, r)]
        self._packs.intersection_update(keep)
        for f in [f for f in self._buckets if not any(_is_under(f, r) for r in keep)]:
            del self._buckets[f]
        self._full = keep if len(self._buckets) >= MAX_MEMORY_BUCKETS else []

    def changes(self) -> dict[str, dict[str, tuple[str, str, float]]]:
        """The entries of every folder changed in this process (what a forked reader hands back)."""
        with self._lock:
            return {f: dict(b.entries) for f, b in self._buckets.items() if b.dirty}

    def hold_writes(self) -> None:
        """This process is a forked reader (``tui.core.forked``): it never writes a cache file (its entries
        go back to the process that forked it, ``changes``), nor forgets a folder to make room."""
        self.held = True

    def forget_changes(self) -> None:
        """Count nothing changed so far (a forked reader starts here: the parent holds all it holds)."""
        with self._lock:
            for bucket in self._buckets.values():
                bucket.dirty = False

    def absorb(self, changes: dict[str, dict[str, tuple[str, str, float]]]) -> None:
        """Take in another process's ``changes()``, to be written with this process's own: each entry as
        ``put`` keeps one, within the same bound per folder (which of a crowded folder's entries stay may
        differ from one process's choice; none is ever wrong)."""
        for folder, entries in changes.items():
            bucket = self._bucket(folder)
            with self._lock:
                for reader, entry in entries.items():
                    bucket.keep(reader, entry)
                bucket.dirty = True

    def use_pack(self, root: str) -> None:
        """Keep the entries of every folder under ``root`` in one file: a scan of ``root`` then reads one
        cache file and writes one, where a file per folder costs a create and a rename per checkpoint
        (most of a first scan's time). Loads that file, else the nearest ancestor's (an ``ls`` of a
        sub-folder of a root listed before)."""
        root = os.path.abspath(root)
        with self._lock:
            if root in self._packs:
                return
            if len(self._buckets) >= MAX_MEMORY_BUCKETS:
                self._make_room(root)
            self._packs.add(root)
        if self.directory is None:
            return
        loaded = None
        for candidate in _self_and_ancestors(root):
            loaded = self._load_pack(candidate, root)
            if loaded is not None:
                break
        with self._lock:
            for folder, entries in (loaded or {}).items():
                if folder not in self._buckets and len(self._buckets) < MAX_MEMORY_BUCKETS:
                    self._buckets[folder] = _Bucket(entries, used=False)

    # --- disk -----------------------------------------------------------------------------------------

    def file_for(self, folder: str, kind: bytes = b"") -> str:
        """The cache file that holds ``folder``'s entries (``kind``: another file about it, a pack, a snapshot)."""
        assert self.directory is not None
        digest = sha1(kind + os.fsencode(folder)).hexdigest()
        return os.path.join(self.directory, digest[:2], digest[2:] + ".cache")

    def _load(self, folder: str) -> _Bucket:
        if self.directory is None:
            return _Bucket({})
        subdirs = self._cache_subdirs()
        if not subdirs:  # an empty cache: not even a name to hash
            return _Bucket({})
        path = self.file_for(folder)
        if os.path.basename(os.path.dirname(path)) not in subdirs:
            return _Bucket({})
        raw = _read_cache_file(path, MAX_BUCKET_BYTES)
        entries = _decode_bucket(raw, folder) if raw is not None else None
        if entries is None:  # missing, corrupt or foreign: start afresh; the next flush replaces it
            return _Bucket({})
        return _Bucket(entries)

    def _cache_subdirs(self) -> frozenset[str]:
        """The cache directory's subfolders, as listed at most SUBDIRS_SECONDS ago: a folder's file is
        looked for only in one of them, so a first scan tries no open per checkpoint folder (a round trip
        each on NFS). One made by another process since is seen by the next listing; until then its
        entries are a miss, read again, never a wrong answer."""
        listed, names = self._subdirs
        now = time.monotonic()
        if now - listed > SUBDIRS_SECONDS:
            assert self.directory is not None
            try:
                names = frozenset(os.listdir(self.directory))
            except OSError:
                names = frozenset()
            self._subdirs = (now, names)
        return names

    def _load_pack(self, root: str, under: str) -> dict[str, dict[str, tuple[str, str, float]]] | None:
        """The folders under ``under`` in the pack file of ``root``; None when there is none intact."""
        raw = _read_cache_file(self.file_for(root, _PACK), self.max_bytes)
        return _decode_pack(raw, root, under) if raw is not None else None

    def flush(self) -> None:
        """Write every folder whose entries changed (atomic per file)."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self.directory is None or self.held:
            return
        packs = sorted(self._packs, key=len, reverse=True)  # a folder belongs to its deepest pack
        members: dict[str, list[str]] = {root: [] for root in packs}
        loose: list[str] = []
        for folder, bucket in self._buckets.items():
            root = next((r for r in packs if _is_under(folder, r)), None)
            if root is not None:
                members[root].append(folder)
            elif bucket.dirty:
                loose.append(folder)
        try:
            wrote = False
            for root, folders in members.items():
                dirty = [f for f in folders if self._buckets[f].dirty]
                if not dirty:
                    continue
                folders = self._drop_gone(folders)
                if not self._write_pack(root, folders):
                    loose += dirty  # too big for one file: a file per folder
                for f in dirty:
                    self._buckets[f].dirty = False
                wrote = True
            for folder in loose:
                self._buckets[folder].dirty = False
                wrote = self._write(folder, self._buckets[folder]) or wrote
        except (OSError, ValueError, TypeError, RecursionError):
            self.directory = None  # read-only, full, or not ours: stop trying for this process
            return
        if wrote:
            self._maybe_sweep()

    def _drop_gone(self, folders: list[str]) -> list[str]:
        """``folders`` less those this process never looked up and that no longer exist (a checkpoint
        deleted, or rotated away by its trainer), which are forgotten: a pack is rewritten with what it
        was loaded with, and would otherwise keep every folder its root ever held."""
        kept = []
        for folder in folders:
            if self._buckets[folder].used or os.path.isdir(folder):
                kept.append(folder)
            else:
                del self._buckets[folder]
                self._full = []
        return kept

    def _write(self, folder: str, bucket: _Bucket) -> bool:
        lines = [json.dumps(folder), *_entry_lines(bucket)]
        body = "\n".join(lines).encode("utf-8", "surrogatepass")
        if len(body) > MAX_BUCKET_BYTES:
            return False
        _write_cache_file(self.file_for(folder), FORMAT, body)
        return True

    def _write_pack(self, root: str, folders: list[str]) -> bool:
        """One file for every folder under ``root``: its root, then per folder a line with the folder
        (a JSON string: the only lines starting with a quote) followed by that folder's entry lines.
        Compressed as it is built: the text of 10,000 checkpoints is ~34 MB, which whole (joined, then
        encoded) took ~80 MB of memory on top of the scan's at exit."""
        # JSON of thousands of checkpoints alike compresses ~20x at level 1 (3.3 MB -> 150 KB for 1,000
        # in ~10 ms): a 10,000-checkpoint root fits the size cap, and a network home reads less.
        deflate = zlib.compressobj(1)
        body: list[bytes] = []
        text_size = body_size = 0
        for piece in _pack_pieces(root, ((f, self._buckets[f]) for f in sorted(folders))):
            text_size += len(piece)
            body.append(deflate.compress(piece))
            body_size += len(body[-1])
            if body_size > self.max_bytes // 2 or text_size > MAX_PACK_TEXT:
                return False
        body.append(deflate.flush())
        if body_size + len(body[-1]) > self.max_bytes // 2:
            return False
        _write_cache_file(self.file_for(root, _PACK), PACK_FORMAT, b"".join(body))
        return True

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


def _self_and_ancestors(path: str) -> list[str]:
    out = [path]
    while (parent := os.path.dirname(out[-1])) != out[-1]:
        out.append(parent)
    return out


# For other whole files kept here (tui.core.snapshot): the same atomic write, CRC line and bounded read.
write_file = _write_cache_file
read_file = _read_cache_file


def _keys_text(keys: list[FileKey]) -> str:
    """``keys`` as compact JSON (what ``json.dumps`` writes, built directly: this runs per lookup)."""
    parts = []
    for k in keys:
        name = _json_string(k[0])
        parts.append(f"[{name},null]" if len(k) == 2 else f"[{name},{k[1]},{k[2]},{k[3]},{k[4]},{k[5]}]")
    return f"[{','.join(parts)}]"


def racy_after(started_ns: int | None = None) -> int:
    """The mtime/ctime (ns) past which a file is too recent to trust (or from the future: another host's
    clock): ``RACY_SECONDS`` before now, or before ``started_ns`` when that came first."""
    now = time.time_ns()
    return (now if started_ns is None else min(started_ns, now)) - int(RACY_SECONDS * 1e9)


def _racy(keys: list[FileKey]) -> bool:
    """A key too recent to trust."""
    limit = racy_after()
    return any(len(k) > 2 and max(k[4], k[5]) > limit for k in keys)


# --- the process's cache ----------------------------------------------------------------------------------

_shared: SummaryCache | None = None
_shared_lock = _thread.allocate_lock()


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
        directory = (directory or default_directory()) if enabled else None
        if directory is not None and _someone_elses(directory):
            directory = None
        _shared = SummaryCache(directory, max_bytes=_env_max_bytes())
        return _shared


def _someone_elses(directory: str) -> bool:
    """The cache directory exists and another user owns it (``sudo`` keeping HOME, a shared
    XDG_CACHE_HOME): its answers were read with someone else's permissions, and its writer could plant
    any verdict. Used from memory only then."""
    try:
        return os.stat(directory).st_uid != os.geteuid()
    except (OSError, AttributeError):  # not there yet (ours once written), or no POSIX ids
        return False


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
    known = getattr(_walk, "stats", None) or {}
    keys = []
    for p, st in files:
        path = os.fspath(p)
        if st is None and path in known:  # the walk noted it already
            keys.append([_name_in(folder, path), *known[path]])
            continue
        st = st if st is not None else stat_of(path)
        keys.append(_key_of(_name_in(folder, path), st))
        if readlog.noting():  # an answer from the cache opens nothing: a snapshot must check these
            readlog.note(path, st)
    keys_text = _keys_text(keys)
    text = cache.get(reader, folder, keys_text)
    if text is not None:
        try:
            value = loads_json(text.encode("utf-8", "surrogatepass"))
            return decode(value) if decode is not None else value
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
            pass  # an entry of another layout: read again
    result = compute()
    try:
        text = dumps_json(encode(result) if encode is not None else result)
    except (TypeError, ValueError, RecursionError):
        return result
    cache.put(reader, folder, keys, text, keys_text)
    return result


def _name_in(folder: str, path: str) -> str:
    return path[len(folder) + 1 :] if path.startswith(folder + os.sep) else path
