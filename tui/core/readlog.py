"""Which files and folders the scans now running have looked at, with the stat each was seen with: a
whole-scan snapshot (``tui.core.snapshot``) stays valid only while every one of them is unchanged.

The walk notes each folder it lists and each file it stats; ``files.open_regular_file`` notes every file
any reader opens; ``cache.memo`` notes the files of every answer it gives from the cache (whose reader
then opens nothing). Noting costs one truth test while no scan records.

A name looked up in a folder the walk listed (``listed``) needs no note of its own: the folder's mtime
changes when an entry is added, removed or renamed, and every link among its entries is noted with its
target's stat. A name looked up anywhere else (``note_lookup``: through a linked folder, in ROOT's
parent) is noted itself, found or not.

A path seen twice with different stats changed while the scan ran: the log says so (``unsteady``) and
no snapshot is written from it.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any

# (device, inode, size, mtime_ns, ctime_ns, blocks); None: missing. The blocks a file occupies are what
# ``allocated_bytes`` reports, and ZFS, for one, updates them when it writes the data out, seconds after
# the timestamps (0 where the platform has no st_blocks).
Key = tuple[int, int, int, int, int, int] | None


class ReadLog:
    """What one scan saw; also what it must judge again on a replay, and whether it ran to its end."""

    __slots__ = ("seen", "listed", "lookups", "unsteady", "lock_lines", "finished", "started_ns")

    def __init__(self) -> None:
        self.seen: dict[str, Key] = {}
        self.listed: set[str] = set()  # folders the walk listed (each also in ``seen``)
        self.lookups: dict[str, Key] = {}  # names readers looked up (note_lookup), settled at the end
        self.unsteady = False
        # (.lock path, the record, index of its problem line quoting who holds the lock: a process table and
        # a clock say that, no file does)
        self.lock_lines: list[tuple[str, Any, int]] = []
        self.finished = False  # the walk reached its end (not cancelled, the root a folder)
        self.started_ns = time.time_ns()


    def settle(self) -> None:
        """Move the lookups into ``seen``, but those in a listed folder: its mtime answers for them (a name
        added there after the lookup made the folder's mtime newer than the scan's start: racy)."""
        for path, key in self.lookups.items():
            where = (path if os.path.dirname(path) not in self.listed else None) if key is not None else (
                _missing_from(self, path)
            )
            if where is not None and self.seen.setdefault(where, key) != key:
                self.unsteady = True
        self.lookups.clear()


_logs: list[ReadLog] = []


def key_of(st: os.stat_result | None) -> Key:
    if st is None:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, getattr(st, "st_blocks", 0))


def note(path: str, st: os.stat_result | None) -> None:
    """``path`` was seen with ``st`` (None: it does not exist)."""
    if not _logs:
        return
    if not os.path.isabs(path):  # a snapshot is checked from another working folder
        path = os.path.abspath(path)
    key = key_of(st)
    for log in _logs:
        old = log.seen.setdefault(path, key)
        if old != key:
            log.unsteady = True


def listed(folder: str) -> None:
    """A walk listed ``folder``, links among its entries noted. It answers for the names in it only in a log
    that noted the folder itself (the scan does before it lists; the app may inspect meanwhile)."""
    for log in _logs:
        if log.seen.get(folder) is not None:
            log.listed.add(folder)


def note_lookup(path: str, st: os.stat_result | None) -> None:
    """A reader looked ``path`` up by name and found ``st`` (None: nothing there). Kept aside until the scan
    ends (``ReadLog.settle``): by then the walk may have listed its folder, which then answers for it."""
    if not _logs:
        return
    if not os.path.isabs(path):
        path = os.path.abspath(path)
    key = key_of(st)
    for log in _logs:
        if log.lookups.setdefault(path, key) != key:
            log.unsteady = True


def _missing_from(log: ReadLog, path: str) -> str | None:
    """What to note of a missing ``path``: its outermost missing folder whose parent exists (nothing to
    note when that parent was listed). ``out/checkpoint-4`` below a listed checkpoint folder that holds no
    ``out`` costs the snapshot nothing."""
    while True:
        parent = os.path.dirname(path)
        if parent in log.listed:
            return None
        if parent == path or os.path.exists(parent):
            return path
        path = parent


# What a failed open or listing says about the tree, the same on every try; any other error (EIO, ESTALE,
# EMFILE, ETIMEDOUT...) may pass, and a scan that met one is not remembered.
_LASTING = frozenset(
    (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.ELOOP, errno.ENAMETOOLONG, errno.EISDIR,
     errno.ENXIO, errno.ENODEV)
)


def note_failure(path: str, error: OSError) -> None:
    """Opening or listing ``path`` failed with ``error``: what makes it fail is noted (nothing there: as a
    lookup; no permission, a loop: the path's own stat), or the scan is marked unsteady."""
    if not _logs:
        return
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        note_lookup(path, None)
    elif error.errno in _LASTING:
        try:
            st: os.stat_result | None = os.stat(path)
        except (OSError, ValueError):
            st = None
        note(path, st)
    else:
        for log in _logs:
            log.unsteady = True


def merge(log: ReadLog, seen: dict[str, Key], lookups: dict[str, Key], unsteady: bool) -> None:
    """Take in what another process's copy of ``log`` saw and looked up (a forked reader: ``tui.core.forked``)."""
    for mine, theirs in ((log.seen, seen), (log.lookups, lookups)):
        for path, key in theirs.items():
            if mine.setdefault(path, key) != key:
                log.unsteady = True
    log.unsteady = log.unsteady or unsteady


def noting() -> bool:
    return bool(_logs)


@contextmanager
def recording() -> Iterator[ReadLog]:
    log = ReadLog()
    _logs.append(log)
    try:
        yield log
    finally:
        _logs.remove(log)
