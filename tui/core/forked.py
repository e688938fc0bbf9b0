"""A first scan of a big root on more than one core: the reading of checkpoints is pure Python, so threads
share one core (the GIL); forked processes do not.

The walk runs first, here (it decides the order, the marks and what belongs to which checkpoint); its
deferred reads are cut into contiguous chunks; this process reads the first, one forked child each of the
others. A child only computes: its records come back through a pipe with what it changed on the side
(``export``: the summary cache's new entries, the paths it saw, its errors), which this process takes in
(``absorb``) before yielding that chunk's records, so the results, their order and everything written
afterwards are what one process would have made. A child writes nothing to disk and leaves with
``os._exit`` (no atexit flush, no stdio flush); the pipe carries a pickle of our own records from our
own child, never bytes read off disk. A child that fails in any way (a crash, a signal, a short pipe):
its chunk is read here instead.

Used only where it is safe and pays: ``os.fork`` exists, this process runs a single thread (a fork copies
only the calling thread: a lock another thread held would stay locked in the child), and every process
gets at least ``MIN_PER_PROCESS`` items. ``CKPT_TUI_PROCESSES`` (default: the CPUs this process may run
on, at most ``MAX_PROCESSES``; 1: never fork). The CLI's ``ls`` uses it; the app never does (threads).
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Callable, Iterator
from typing import Any

from tui.core.pool import Deferred

PROCESSES_ENV = "CKPT_TUI_PROCESSES"
MAX_PROCESSES = 4
MIN_PER_PROCESS = MIN_PER_PROCESS_DEFAULT = 100  # a fork and the pipe cost ~5 ms; 100 reads ~50 ms


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


def can_fork(items: int, processes: int) -> int:
    """How many processes to read ``items`` with (1: here alone)."""
    if processes <= 1 or not hasattr(os, "fork") or other_threads():
        return 1
    return max(1, min(processes, items // MIN_PER_PROCESS))


def in_processes(
    items: list[Deferred],
    processes: int,
    *,
    export: Callable[[list[Any]], Any],
    absorb: Callable[[Any, list[Any]], None],
) -> Iterator[Any]:
    """The results of every item in order, read by ``processes`` processes (this one and forked children).
    ``export(results)`` runs in a child after its chunk, ``absorb(payload, results)`` here before that
    chunk's results are yielded."""
    size = -(-len(items) // processes)
    chunks = [items[n : n + size] for n in range(0, len(items), size)]
    children = [_fork(chunk, export) for chunk in chunks[1:]]
    for item in chunks[0]:
        yield from item.finish()
    for chunk, child in zip(chunks[1:], children, strict=True):
        got = _collect(child)
        if got is None:  # the child failed: read its chunk here
            for item in chunk:
                yield from item.finish()
            continue
        results, payload = got
        absorb(payload, results)
        yield from results


def _fork(chunk: list[Deferred], export: Callable[[list[Any]], Any]) -> tuple[int, int] | None:
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
            results = [result for item in chunk for result in item.finish()]
            with os.fdopen(w, "wb") as out:  # streamed: no second copy of a 10,000-checkpoint payload
                pickle.dump((results, export(results)), out, protocol=pickle.HIGHEST_PROTOCOL)
            code = 0
        except BaseException:  # noqa: BLE001 - anything: the parent reads this chunk itself
            pass
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _collect(child: tuple[int, int] | None) -> tuple[list[Any], Any] | None:
    if child is None:
        return None
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
