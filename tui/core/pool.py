"""Reading many small files at once: a network filesystem answers each open, read and stat after a
round trip, and threads overlap the round trips (the work itself holds the GIL, so a local disk gains
little and loses little). Results come back in the order the work was handed in.

API::

    Deferred(finish)            # finish() -> list of results, run later, maybe on a worker thread
    in_order(items, *, threads) -> Iterator   # the results of each item's finish(), in order
    read_threads() -> int       # CKPT_TUI_READ_THREADS (default 8; 1: no threads)
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

READ_THREADS_ENV = "CKPT_TUI_READ_THREADS"
DEFAULT_READ_THREADS = 8
AHEAD_PER_THREAD = 4


class Deferred:
    """Work whose results are wanted in order, done later, maybe on a worker thread."""

    __slots__ = ("finish",)

    def __init__(self, finish: Callable[[], list[Any]]) -> None:
        self.finish = finish


def read_threads() -> int:
    try:
        return max(1, min(64, int(os.environ.get(READ_THREADS_ENV, DEFAULT_READ_THREADS))))
    except ValueError:
        return DEFAULT_READ_THREADS


def in_order(items: Iterable[Deferred], *, threads: int) -> Iterator[Any]:
    """The results of every item in hand-in order; with ``threads`` > 1, up to AHEAD_PER_THREAD per
    thread are worked on while the caller consumes (and while ``items`` is still being produced)."""
    if threads <= 1:
        for item in items:
            yield from item.finish()
        return
    pending: deque[Future[list[Any]]] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="ckpt-read") as pool:
        try:
            for item in items:
                pending.append(pool.submit(item.finish))
                while pending and (len(pending) > AHEAD_PER_THREAD * threads or pending[0].done()):
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        finally:
            for future in pending:  # the caller stopped early: do not read what nobody will see
                future.cancel()
