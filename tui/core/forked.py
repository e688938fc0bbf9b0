"""A first scan of a big root on more than one core: the reading of checkpoints is pure Python, so threads
share one core (the GIL); forked processes do not.

The walk runs here (it decides the order, the marks and what belongs to which checkpoint) and hands its
deferred reads on as it goes: whenever a child is free, the reads walked since the last hand-on go to a
freshly forked one, which reads them while the walk goes on; while every child is busy and the reads
pile up, this process reads a few itself between steps of the walk (and the first few before any child,
so that what they teach, the replays the pickles of one layout share, every child inherits). After the
walk the rest is shared the same way, half to each free child. A child only computes: its records come
back through a pipe with what it changed on the side (``export``: the summary cache's new entries, the
paths it saw, its errors, each counted from ``begin``, which the child runs first), which this process
takes in (``absorb``) before yielding that chunk's records, so the results, their order and everything
written afterwards are what one process would have made: a deferred read depends only on what the walk
had done when it was handed on. A child writes nothing to disk and leaves with ``os._exit`` (no atexit
flush, no stdio flush); the pipe carries a pickle of our own records from our own child, never bytes read
off disk. A child that fails in any way (a crash, a signal, a short pipe): its chunk is read here instead.

Used only where it is safe and pays: ``os.fork`` exists, this process runs a single thread (a fork copies
only the calling thread: a lock another thread held would stay locked in the child), and a child gets at
least ``MIN_PER_PROCESS`` items. ``CKPT_TUI_PROCESSES`` (default: the CPUs this process may run on, at most
``MAX_PROCESSES``; 1: never fork) is how many children may read at once. The CLI's ``ls`` uses it, and
the app's first scan through it (``tui.core.subscan``); the app itself never forks (threads).
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from tui.core.pool import Deferred

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

PROCESSES_ENV = "CKPT_TUI_PROCESSES"
MAX_PROCESSES = 4
MIN_PER_PROCESS = MIN_PER_PROCESS_DEFAULT = 32  # a child's least: a fork and its pipe cost ~3 ms, 32 reads ~25
# A fork copies this process's page tables and makes its pages copy-on-write, which the walk then pays
# for page by page: a child gets at least 1/8 of the walk so far (10,000 checkpoints, a 190 MB process:
# 26 forks instead of 60, 5.8 s instead of 7.5 s).
LEAST_PER_WALK = 8
BACKLOG = 100  # items walked and waiting for a child, past which this process reads some itself
BACKLOG_PER_WALK = 8  # ... or past 1/8 of the walk so far
POLL_EVERY = 8  # items walked between looks for children done
LOCAL = 10  # items this process reads between steps of the walk while every child is busy


def default_processes() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        wanted = int(os.environ.get(PROCESSES_ENV, MAX_PROCESSES))
    except ValueError:
        wanted = MAX_PROCESSES
    return max(1, min(wanted, cpus, MAX_PROCESSES))


def other_threads() -> bool:
    """Another thread runs in this process (a fork would copy none of them, nor release their locks)."""
    return threading.active_count() != 1


def can_fork(processes: int) -> bool:
    return processes > 1 and hasattr(os, "fork") and hasattr(select, "poll") and not other_threads()


class _Chunk:
    """Items handed to one child (or read here), in walk order; ``results`` once they are in."""

    __slots__ = ("items", "child", "results")

    def __init__(self, items: list[Deferred], child: tuple[int, int] | None = None) -> None:
        self.items = items
        self.child = child  # (pid, read end of its pipe) until collected
        self.results: list[Any] | None = None

    def read_here(self) -> None:
        self.results = [result for item in self.items for result in item.finish()]


def streamed(
    items: Iterable[Deferred],
    processes: int,
    *,
    begin: Callable[[], Any],
    export: Callable[[list[Any], Any], Any],
    absorb: Callable[[Any, list[Any]], None],
) -> Iterator[Any]:
    """The results of every item in order, read by up to ``processes`` processes at once: this one (between
    steps of the walk that produces ``items``, and after it) and forked children. In a child, ``begin()``
    runs first and ``export(results, begun)`` after its chunk; ``absorb(payload, results)`` runs here
    before that chunk's results are yielded."""
    if not can_fork(processes):
        for item in items:
            yield from item.finish()
        return
    readers = _Readers(processes, begin, export, absorb)
    try:
        walked = 0
        for item in items:
            readers.pending.append(item)
            walked += 1
            if walked % POLL_EVERY:
                continue
            yield from readers.ready()
            readers.least = max(MIN_PER_PROCESS, walked // LEAST_PER_WALK)
            if not readers.hand_on() and len(readers.pending) >= max(BACKLOG, walked // BACKLOG_PER_WALK):
                readers.read_some()
        while readers.pending:  # the walk is done: the rest, shared the same way
            yield from readers.ready()
            if not readers.hand_on(keep_half=True):
                readers.read_some()
        yield from readers.drain()
    finally:
        readers.abandon()


class _Readers:
    """The chunks handed out, in walk order, and the items walked but not yet handed out (``pending``)."""

    def __init__(self, processes: int, begin: Callable, export: Callable, absorb: Callable) -> None:
        # As many children as processes: the walk, here, is light beside them (one more process than
        # CPUs keeps every CPU busy while it walks; measured on 2 CPUs: 0.52 s vs 0.58 s with one child).
        self.children = processes
        self.begin, self.export, self.absorb = begin, export, absorb
        self.chunks: deque[_Chunk] = deque()
        self.pending: list[Deferred] = []
        self.poller = select.poll()
        self.waiting: dict[int, _Chunk] = {}  # read end -> its chunk, while the child computes
        self.warm = False  # some items were read here
        self.least = MIN_PER_PROCESS  # the fewest items a child is forked for

    def hand_on(self, *, keep_half: bool = False) -> bool:
        """Give the pending items to a free child, if there is one and they are enough (``keep_half``:
        half of them, once the walk is done: the children that free up meanwhile share the rest). The
        first few are read here before any: what they teach (the replays the pickles of one layout
        share) every child inherits."""
        if not self.warm:
            if len(self.pending) < LOCAL and not keep_half:
                return True  # too few to read yet: walk on
            self.read_some()
            if not self.pending:
                return True
        if len(self.waiting) >= self.children or len(self.pending) < self.least:
            return False
        cut = max(self.least, len(self.pending) // 2) if keep_half else len(self.pending)
        self._fork(self.pending[:cut])
        del self.pending[:cut]
        return True

    def read_some(self) -> None:
        chunk = _Chunk(self.pending[:LOCAL])
        chunk.read_here()
        self.chunks.append(chunk)
        del self.pending[:LOCAL]
        self.warm = True

    def _fork(self, part: list[Deferred]) -> None:
        chunk = _Chunk(part, _fork(part, self.begin, self.export))
        self.chunks.append(chunk)
        if chunk.child is None:  # no child could be made: read it here
            chunk.read_here()
            return
        self.waiting[chunk.child[1]] = chunk
        self.poller.register(chunk.child[1], select.POLLIN | select.POLLHUP)

    def _take(self, chunk: _Chunk) -> None:
        assert chunk.child is not None
        del self.waiting[chunk.child[1]]
        self.poller.unregister(chunk.child[1])
        got = _collect(chunk.child)
        chunk.child = None
        if got is None:  # the child failed: read its chunk here
            chunk.read_here()
        else:
            chunk.results, payload = got
            self.absorb(payload, chunk.results)

    def ready(self) -> Iterator[Any]:
        """Take in the children done, and yield the results now complete from the first on."""
        if self.waiting:
            for fd, _ in self.poller.poll(0):
                self._take(self.waiting[fd])
        while self.chunks and self.chunks[0].results is not None:
            yield from self.chunks.popleft().results

    def drain(self) -> Iterator[Any]:
        while self.chunks:
            chunk = self.chunks.popleft()
            if chunk.results is None:
                self._take(chunk)
            yield from chunk.results  # type: ignore[misc]

    def abandon(self) -> None:
        """Stopped early: the children's reads are wanted no more."""
        for chunk in self.chunks:
            if chunk.child is not None:
                _abandon(chunk.child)


def _fork(
    chunk: list[Deferred], begin: Callable[[], Any], export: Callable[[list[Any], Any], Any]
) -> tuple[int, int] | None:
    """(pid, read end of its pipe), or None when no child could be made."""
    try:
        r, w = os.pipe()
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if pid == 0:  # the child: compute, send, leave without running anything of the parent's on exit
        code = 1
        try:
            os.close(r)
            begun = begin()
            results = [result for item in chunk for result in item.finish()]
            with os.fdopen(w, "wb") as out:  # streamed: no second copy of a 10,000-checkpoint payload
                pickle.dump((results, export(results, begun)), out, protocol=pickle.HIGHEST_PROTOCOL)
            code = 0
        except BaseException:  # noqa: BLE001 - anything: the parent reads this chunk itself
            pass
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _collect(child: tuple[int, int]) -> tuple[list[Any], Any] | None:
    pid, r = child
    got = None
    try:
        with os.fdopen(r, "rb", buffering=1 << 20) as f:
            got = pickle.load(f)  # our own records, from our own child; streamed off the pipe
    except Exception:  # noqa: BLE001 - a short or garbled pipe (the child died): read the chunk here
        got = None
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        status = 1
    if status != 0 or not isinstance(got, tuple) or len(got) != 2:
        return None
    return got


def _abandon(child: tuple[int, int]) -> None:
    pid, r = child
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass
    try:
        os.close(r)
    except OSError:
        pass
