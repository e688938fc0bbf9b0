"""A first scan of a big root on more than one core: the reading of checkpoints is pure Python, so threads
share one core (the GIL); forked processes do not.

The walk runs here (it decides the order, the marks and what belongs to which checkpoint) and hands its
deferred reads on as it goes to reader processes forked from this one: whenever a reader is free, the
reads walked since the last hand-on are sent to it (pickled: each holds what the walk found, see
``tui.core.scan_reads``) and it reads them while the walk goes on; while every reader is busy and the reads
pile up, this process reads a few itself between steps of the walk (and the first few before any reader
is forked, so that what they teach, the replays the pickles of one layout share, every reader inherits).
After the walk the rest is shared the same way, half to each free reader. A reader only computes: its
records come back through a pipe with what it changed on the side (``export``: the summary cache's new
entries, the paths it saw, its errors, each counted from ``begin``, which it runs before each chunk),
which this process takes in (``absorb``) before yielding that chunk's records, so the results, their
order and everything written afterwards are what one process would have made. A reader writes nothing to
disk and leaves with ``os._exit`` (no atexit flush, no stdio flush) when told to or when this process
goes; the pipes carry pickles of our own records between our own processes, never bytes read off disk.
A reader that fails in any way (a crash, a signal, a short pipe): its chunk is read here instead.

Readers are forked when first needed and kept: a fork makes every page of this process copy-on-write, and
the walk then pays a page fault for each page it touches while a child lives. Forking a child per chunk
(as before) cost a 1,000-checkpoint ``ls`` ~50,000 page faults against ~11,000 in one process.

Used only where it is safe and pays: ``os.fork`` exists, this process runs a single thread (a fork copies
only the calling thread: a lock another thread held would stay locked in the child), and a reader gets at
least ``MIN_PER_PROCESS`` items. ``CKPT_TUI_PROCESSES`` (default: the CPUs this process may run on, at most
``MAX_PROCESSES``; 1: never fork) is how many readers may read at once. The CLI's ``ls`` uses it, and
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
MIN_PER_PROCESS = MIN_PER_PROCESS_DEFAULT = 32  # a reader's least: a round trip costs ~1 ms, 32 reads ~15
# A reader gets at least 1/8 of the walk so far: fewer round trips (each takes in the reader's cache entries
# and paths seen) on a big tree, while the first chunks stay small enough to start every reader early.
LEAST_PER_WALK = 8
BACKLOG = 100  # items walked and waiting for a reader, past which this process reads some itself
BACKLOG_PER_WALK = 8  # ... or past 1/8 of the walk so far
POLL_EVERY = 8  # items walked between looks for readers done
LOCAL = 10  # items this process reads between steps of the walk while every reader is busy
PIPE_BUFFER = 1 << 20


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
    """Items handed to one reader (or read here), in walk order; ``results`` once they are in."""

    __slots__ = ("items", "reader", "results")

    def __init__(self, items: list[Deferred], reader: _Reader | None = None) -> None:
        self.items = items
        self.reader = reader  # until collected
        self.results: list[Any] | None = None

    def read_here(self) -> None:
        self.results = [result for item in self.items for result in item.finish()]


class _Reader:
    """A forked reader: its pid, the pipe this process writes chunks to, the one its results come back on."""

    __slots__ = ("pid", "send", "receive")

    def __init__(self, pid: int, send: Any, receive: Any) -> None:
        self.pid, self.send, self.receive = pid, send, receive

    def stop(self, *, kill: bool) -> None:
        """Close its pipes (it reads the end of its input and leaves) and, with ``kill``, kill it."""
        for f in (self.send, self.receive):
            try:
                f.close()
            except OSError:
                pass
        if kill:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass

    def reap(self) -> None:
        try:
            os.waitpid(self.pid, 0)
        except OSError:
            pass


def streamed(
    items: Iterable[Deferred],
    processes: int,
    *,
    begin: Callable[[], Any],
    export: Callable[[list[Any], Any], Any],
    absorb: Callable[[Any, list[Any]], None],
) -> Iterator[Any]:
    """The results of every item in order, read by up to ``processes`` processes at once besides this one
    (between steps of the walk that produces ``items``, and after it, this one reads too). Items must
    pickle (handed to a reader) and have ``finish()``. In a reader, ``begin()`` runs before each chunk and
    ``export(results, begun)`` after it; ``absorb(payload, results)`` runs here before that chunk's results
    are yielded."""
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
        readers.close()


class _Readers:
    """The readers, the chunks handed out in walk order, and the items walked but not yet handed out
    (``pending``)."""

    def __init__(self, processes: int, begin: Callable, export: Callable, absorb: Callable) -> None:
        # As many readers as processes: the walk, here, is light beside them (one more process than
        # CPUs keeps every CPU busy while it walks).
        self.most = processes
        self.begin, self.export, self.absorb = begin, export, absorb
        self.readers: list[_Reader] = []
        self.idle: list[_Reader] = []
        self.chunks: deque[_Chunk] = deque()
        self.pending: list[Deferred] = []
        self.poller = select.poll()
        self.busy: dict[int, _Chunk] = {}  # fd of a reader's results -> its chunk, while it reads
        self.warm = False  # some items were read here
        self.forks_failed = False  # no more readers: one could not be forked, or sent its chunk
        self.least = MIN_PER_PROCESS  # the fewest items a reader is handed

    def hand_on(self, *, keep_half: bool = False) -> bool:
        """Give the pending items to a free reader, if there is one (or one more may be forked) and they are
        enough (``keep_half``: half of them, once the walk is done: the readers that free up meanwhile
        share the rest). The first few are read here before any reader is forked: what they teach (the
        replays the pickles of one layout share) every reader inherits."""
        if not self.warm:
            if len(self.pending) < LOCAL and not keep_half:
                return True  # too few to read yet: walk on
            self.read_some()
            if not self.pending:
                return True
        if len(self.pending) < self.least:
            return False
        reader = self._free_reader()
        if reader is None:
            return False
        cut = max(self.least, len(self.pending) // 2) if keep_half else len(self.pending)
        self._send(reader, self.pending[:cut])
        del self.pending[:cut]
        return True

    def _free_reader(self) -> _Reader | None:
        if self.idle:
            return self.idle.pop()
        if len(self.readers) >= self.most or self.forks_failed or other_threads():
            return None
        reader = _fork(self.readers, self.begin, self.export)
        if reader is None:
            self.forks_failed = True
            return None
        self.readers.append(reader)
        return reader

    def read_some(self) -> None:
        chunk = _Chunk(self.pending[:LOCAL])
        chunk.read_here()
        self.chunks.append(chunk)
        del self.pending[:LOCAL]
        self.warm = True

    def _send(self, reader: _Reader, part: list[Deferred]) -> None:
        chunk = _Chunk(part, reader)
        self.chunks.append(chunk)
        try:
            pickle.dump(part, reader.send, protocol=pickle.HIGHEST_PROTOCOL)
            reader.send.flush()
        except Exception:  # noqa: BLE001 - a reader gone (a broken pipe), an item that does not pickle
            self._drop(reader)
            self.forks_failed = True  # the rest is read here
            chunk.reader = None
            chunk.read_here()
            return
        fd = reader.receive.fileno()
        self.busy[fd] = chunk
        self.poller.register(fd, select.POLLIN | select.POLLHUP)

    def _take(self, chunk: _Chunk) -> None:
        reader = chunk.reader
        assert reader is not None
        fd = reader.receive.fileno()
        del self.busy[fd]
        self.poller.unregister(fd)
        chunk.reader = None
        got = _receive(reader)
        if got is None:  # the reader failed: read its chunk here
            self._drop(reader)
            chunk.read_here()
            return
        self.idle.append(reader)
        chunk.results, payload = got
        self.absorb(payload, chunk.results)

    def _drop(self, reader: _Reader) -> None:
        self.readers.remove(reader)
        reader.stop(kill=True)
        reader.reap()

    def ready(self) -> Iterator[Any]:
        """Take in the readers done, and yield the results now complete from the first on."""
        if self.busy:
            for fd, _ in self.poller.poll(0):
                self._take(self.busy[fd])
        while self.chunks and self.chunks[0].results is not None:
            yield from self.chunks.popleft().results

    def drain(self) -> Iterator[Any]:
        while self.chunks:
            chunk = self.chunks.popleft()
            if chunk.results is None:
                self._take(chunk)
            yield from chunk.results  # type: ignore[misc]

    def close(self) -> None:
        """Done, or stopped early (an exception, an interrupt, the consumer gone): every reader is killed,
        idle or not. Its reads are wanted no more, it holds nothing to write; and an idle one may never see
        the end of its input: a process forked meanwhile (another scan's reader) can hold its pipe open."""
        for reader in self.readers:  # all first: they leave side by side
            reader.stop(kill=True)
        for reader in self.readers:
            reader.reap()
        self.readers.clear()


def _fork(
    others: list[_Reader], begin: Callable[[], Any], export: Callable[[list[Any], Any], Any]
) -> _Reader | None:
    """A new reader, or None when none could be made."""
    try:
        chunks_r, chunks_w = os.pipe()
    except OSError:
        return None
    try:
        results_r, results_w = os.pipe()
    except OSError:
        os.close(chunks_r)
        os.close(chunks_w)
        return None
    try:
        pid = os.fork()
    except OSError:
        for fd in (chunks_r, chunks_w, results_r, results_w):
            os.close(fd)
        return None
    if pid == 0:  # the reader: compute, send, leave without running anything of the parent's on exit
        code = 1
        try:
            os.close(chunks_w)
            os.close(results_r)
            for other in others:  # the other readers' pipes: they must see this process's end as theirs
                os.close(other.send.fileno())
                os.close(other.receive.fileno())
            _serve(chunks_r, results_w, begin, export)
            code = 0
        except BaseException:  # noqa: BLE001 - anything: the parent reads the chunk itself
            pass
        finally:
            os._exit(code)
    os.close(chunks_r)
    os.close(results_w)
    send = os.fdopen(chunks_w, "wb", buffering=PIPE_BUFFER)
    return _Reader(pid, send, os.fdopen(results_r, "rb", buffering=PIPE_BUFFER))


def _receive(reader: _Reader) -> tuple[list[Any], Any] | None:
    """(results, payload) of the chunk the reader was sent, or None when it failed."""
    try:
        got = pickle.load(reader.receive)  # our own records, from our own reader
    except Exception:  # noqa: BLE001 - a short or garbled pipe (the reader died)
        return None
    return got if isinstance(got, tuple) and len(got) == 2 else None


def _serve(
    chunks: int, results: int, begin: Callable[[], Any], export: Callable[[list[Any], Any], Any]
) -> None:
    """A reader's life: each chunk read off ``chunks`` is read and its results written to ``results``, until
    the parent closes its end."""
    source = os.fdopen(chunks, "rb", buffering=PIPE_BUFFER)
    out = os.fdopen(results, "wb", buffering=PIPE_BUFFER)
    with source, out:
        while True:
            try:
                part = pickle.load(source)  # our own reads, from the process that forked us
            except EOFError:
                return
            begun = begin()
            done = [result for item in part for result in item.finish()]
            pickle.dump((done, export(done, begun)), out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
