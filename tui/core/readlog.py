"""Which files and folders the scans now running have looked at, with the stat each was seen with: a
whole-scan snapshot (``tui.core.snapshot``) stays valid only while every one of them is unchanged.

The walk notes each folder it lists and each file it stats; ``files.open_regular_file`` notes every file
any reader opens; ``cache.memo`` notes the files of every answer it gives from the cache (whose reader
then opens nothing). Noting costs one truth test while no scan records.

A path seen twice with different stats changed while the scan ran: the log says so (``unsteady``) and
no snapshot is written from it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

Key = tuple[int, int, int, int, int] | None  # (device, inode, size, mtime_ns, ctime_ns); None: missing


class ReadLog:
    """What one scan saw; also what it must judge again on a replay, and whether it ran to its end."""

    __slots__ = ("seen", "unsteady", "lock_lines", "finished", "started_ns")

    def __init__(self) -> None:
        self.seen: dict[str, Key] = {}
        self.unsteady = False
        # (.lock path, the record, index of its problem line quoting who holds the lock: a process table and
        # a clock say that, no file does)
        self.lock_lines: list[tuple[str, Any, int]] = []
        self.finished = False  # the walk reached its end (not cancelled, the root a folder)
        self.started_ns = time.time_ns()


_logs: list[ReadLog] = []


def key_of(st: os.stat_result | None) -> Key:
    if st is None:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


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
