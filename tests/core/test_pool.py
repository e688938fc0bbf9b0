"""Reading in parallel keeps the walk's order and gives the same records as reading one by one."""

from __future__ import annotations

import os
import threading
import time

from tests.fixtures import synthetic as syn
from tui.core import pool, scan


def test_in_order_keeps_hand_in_order_while_work_overlaps():
    running = []
    peak = [0]
    lock = threading.Lock()

    def work(i):
        def finish():
            with lock:
                running.append(i)
                peak[0] = max(peak[0], len(running))
            time.sleep(0.02 if i % 3 else 0.001)  # later items finish first sometimes
            with lock:
                running.remove(i)
            return [i, -i]

        return pool.Deferred(finish)

    out = list(pool.in_order((work(i) for i in range(40)), threads=8))
    assert out == [x for i in range(40) for x in (i, -i)]
    assert peak[0] > 1  # really overlapped


def test_work_that_never_waits_stays_on_the_callers_thread():
    threads = set()

    def work(i):
        return pool.Deferred(lambda: threads.add(threading.get_ident()) or [i])

    assert list(pool.in_order((work(i) for i in range(100)), threads=8)) == list(range(100))
    assert threads == {threading.get_ident()}  # a warm local disk: threads would only cost CPU


def test_a_caller_that_stops_early_cancels_what_is_left(monkeypatch):
    monkeypatch.setattr(pool, "WAITS_PER_ITEM", -1)  # threads from the first window on
    started = []

    def work(i):
        return pool.Deferred(lambda: started.append(i) or [i])

    it = pool.in_order((work(i) for i in range(1000)), threads=2)
    assert next(it) == 0
    it.close()
    assert len(started) < 1000


def test_the_scan_reads_the_same_with_and_without_threads(tmp_path, monkeypatch):
    syn.make_tree(tmp_path, 40)
    monkeypatch.setenv(pool.READ_THREADS_ENV, "1")
    serial = [i.to_json() for i in scan.scan(tmp_path)]
    monkeypatch.setenv(pool.READ_THREADS_ENV, "8")
    monkeypatch.setattr(pool, "WAITS_PER_ITEM", -1)  # threads from the first window on
    assert [i.to_json() for i in scan.scan(tmp_path)] == serial


def test_reads_that_stop_waiting_come_back_to_the_callers_thread(monkeypatch):
    monkeypatch.setattr(pool, "PROBE_AFTER", 16)
    me = threading.get_ident()
    where: list[int] = []

    def work(i):
        def finish():
            if i < 40:
                time.sleep(0.002)  # a stretch of cold files: each read waits
            where.append(threading.get_ident())
            return [i]

        return pool.Deferred(finish)

    assert list(pool.in_order((work(i) for i in range(400)), threads=4)) == list(range(400))
    assert set(where[:40]) != {me} and set(where[200:]) == {me}  # threads for the cold stretch only


def test_waits_for_the_gil_behind_a_busy_thread_are_not_filesystem_waits():
    # The app's UI thread draws while its worker scans: after each read the scan waits for the GIL, a
    # voluntary switch like a read's. Threads would only fight harder for the GIL.
    stop = threading.Event()

    def ui():
        while not stop.is_set():
            sum(range(2000))

    busy = threading.Thread(target=ui)
    busy.start()
    me = threading.get_ident()
    where: list[int] = []

    def work(i):
        def finish():
            for _ in range(5):
                os.stat(".")  # releases the GIL; a warm cache answers at once
            sum(range(500))
            where.append(threading.get_ident())
            return [i]

        return pool.Deferred(finish)

    try:
        assert list(pool.in_order((work(i) for i in range(400)), threads=4)) == list(range(400))
    finally:
        stop.set()
        busy.join()
    assert set(where) == {me}
