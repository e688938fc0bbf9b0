"""Reading many small files at once: a network filesystem answers each open, read and stat after a
round trip, and threads overlap the round trips. On a local disk (or a warm page cache) the same threads
only fight over the GIL: the scan's CPU time doubles. So the work starts on the caller's thread and moves
to threads only once it is seen waiting: ``WAITS_PER_ITEM`` or more voluntary context switches per item
(a blocking ``open``/``read``/``stat``; a busy machine preempts us involuntarily, which does not count)
over a window of ``WINDOW`` items, while the process's other threads stay (nearly) off the CPU (beside a busy
thread, such as the app's UI thread drawing what the scan found, this thread waits for the GIL after each
read, and those waits are voluntary switches too: threads would only add to them). Waiting may pass (a
stretch of files the page cache had dropped): after ``PROBE_AFTER`` items on threads the caller's thread
tries a window alone again, and keeps the work while it does not wait (on a network filesystem it goes
back to threads at once, with twice as many items before the next try). Results come back in the order
the work was handed in.

API::

    Deferred(finish)            # finish() -> list of results, run later, maybe on a worker thread
    in_order(items, *, threads) -> Iterator   # the results of each item's finish(), in order
    read_threads() -> int       # CKPT_TUI_READ_THREADS (default 8; 1: never threads)
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from itertools import chain, islice

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any

try:
    import resource

    def _waits() -> int:
        return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw

except (ImportError, AttributeError):  # no per-thread rusage (not Linux): threads as soon as allowed

    def _waits() -> int:
        return 1 << 62


READ_THREADS_ENV = "CKPT_TUI_READ_THREADS"
DEFAULT_READ_THREADS = 8
AHEAD_PER_THREAD = 4
WINDOW = 8
WAITS_PER_ITEM = 1.0
OTHERS_SHARE = 0.25  # of this thread's CPU in a window: more on other threads, and its waits may be the GIL's
PROBE_AFTER = 256  # items on threads before the caller's thread tries a window alone again
PROBE_AFTER_MAX = 8192  # the most it doubles to while every try still waits


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
    """The results of every item in hand-in order. With ``threads`` > 1, once the work is seen waiting on
    the filesystem, up to AHEAD_PER_THREAD items per thread are worked on while the caller consumes (and
    while ``items`` is still being produced)."""
    items = iter(items)
    if threads <= 1:
        for item in items:
            yield from item.finish()
        return
    executor, batch = None, PROBE_AFTER // 2  # doubled when the first window waits
    try:
        while True:
            quiet = yield from _inline_while_busy(items)
            first = next(items, None)
            if first is None:  # all done (on this thread alone: no pool, nor its ~4 ms import)
                return
            if executor is None:
                from concurrent.futures import ThreadPoolExecutor

                executor = ThreadPoolExecutor(threads, thread_name_prefix="ckpt-read")
            batch = PROBE_AFTER if quiet else min(2 * batch, PROBE_AFTER_MAX)
            yield from _on_threads(executor, chain((first,), islice(items, batch - 1)), threads)
    finally:
        if executor is not None:  # the caller stopped early: do not read what nobody will see
            executor.shutdown(wait=True, cancel_futures=True)


def _on_threads(executor: Any, items: Iterable[Deferred], threads: int) -> Iterator[Any]:
    pending: deque[Any] = deque()
    try:
        for item in items:
            pending.append(executor.submit(item.finish))
            while pending and (len(pending) > AHEAD_PER_THREAD * threads or pending[0].done()):
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def _inline_while_busy(items: Iterator[Deferred]) -> Generator[Any, None, bool]:
    """Work ``items`` on this thread until a window of them waited on the filesystem; then return (the
    rest is for the threads) whether a window before it did not wait. The walk that produces items is
    measured too: its ``stat`` calls wait alike."""
    count, start, quiet = 0, _mark(), False
    for item in items:
        yield from item.finish()
        count += 1
        if count == WINDOW:
            if _waited(start):
                return quiet
            count, start, quiet = 0, _mark(), True
    return quiet


def _mark() -> tuple[int, float, float]:
    """(voluntary switches, CPU seconds of this thread, CPU seconds of the process's other threads) now.
    Shares of CPU, not of wall time: on a loaded machine every thread gets less of both."""
    own = time.thread_time()
    return _waits(), own, time.process_time() - own


def _waited(start: tuple[int, float, float]) -> bool:
    """The window since ``start`` waited on the filesystem, not for the GIL behind a busy thread."""
    waits, own, others = _mark()
    others_busy = others - start[2] > OTHERS_SHARE * (own - start[1])
    return waits - start[0] >= WAITS_PER_ITEM * WINDOW and not others_busy
