"""A first scan read by forked processes answers exactly what one process answers: the same records in the
same order, the same errors, a summary cache that holds every entry and a snapshot that replays; a child
that fails has its chunk read by the parent; nothing forks while another thread runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures import synthetic as syn
from tui.core import cache, forked, readlog, scan, snapshot

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(forked, "MIN_PER_PROCESS", 10)
    monkeypatch.setattr(forked, "BACKLOG", 20)
    # threads other tests of this session left running (pools, workers) would keep every fork off here
    monkeypatch.setattr(forked, "other_threads", lambda: False)
    monkeypatch.setattr(cache, "RACY_SECONDS", -1.0)  # files written by the test may be remembered


@pytest.fixture
def collected(monkeypatch) -> list[bool]:
    """Whether each child's chunk came back from the child (True) or was read here (False)."""
    out: list[bool] = []
    real = forked._receive

    def spy(reader):
        got = real(reader)
        out.append(got is not None)
        return got

    monkeypatch.setattr(forked, "_receive", spy)
    return out


def _tree(root: Path) -> Path:
    syn.make_tree(root, 60)
    syn.write_run(root, "run1", folds=2, steps=(2, 4), lock=True)
    (root / "run1" / "checkpoints" / "fold_0" / "step_4" / "ckpt_manifest.json").unlink()  # a lock line
    syn.deep_folders(root, 70)  # an error line
    return root


def _scan(root: Path, processes: int) -> tuple[list[dict], list[str]]:
    cache.configure(enabled=False)
    errors: list[str] = []
    try:
        infos = [i.to_json() for i in scan.iter_checkpoints(root, errors=errors, processes=processes)]
    finally:
        cache.configure()
    return infos, errors


def test_three_processes_answer_what_one_does(tmp_path, collected):
    root = _tree(tmp_path / "t")
    one = _scan(root, 1)
    assert not collected
    three = _scan(root, 3)
    assert len(collected) >= 2 and all(collected)  # chunks handed on while walking, then the tail's
    assert three == one
    assert any("nested deeper than" in e for e in one[1]) and len(one[0]) > 60


def test_the_cache_and_the_snapshot_hold_what_the_children_read(tmp_path, collected, monkeypatch):
    root = _tree(tmp_path / "t")
    cache.configure()
    first = [i.to_json() for i in snapshot.iter_checkpoints(root, processes=2)]
    assert collected and all(collected)
    cache.shared().flush()
    cache.configure()
    walked: list[int] = []
    real = scan.iter_checkpoints
    monkeypatch.setattr(
        scan, "iter_checkpoints", lambda *a, **k: (walked.append(1) if k.get("log") else None) or real(*a, **k)
    )
    assert [i.to_json() for i in snapshot.iter_checkpoints(root)] == first and not walked  # replayed
    cache.configure()
    before = cache.shared().misses
    assert [i.to_json() for i in scan.iter_checkpoints(root)] == first
    assert cache.shared().misses == before  # every reader answered from the cache, the children's too
    # a file only the child read: the snapshot checks it too
    last = next(i["path"] for i in reversed(first) if i["kind"] == "safetensors-file")
    os.truncate(root / last, 10)
    cache.configure()
    again = [i.to_json() for i in snapshot.iter_checkpoints(root)]
    assert walked == [1] and again != first


def test_a_crowded_folders_cache_stays_within_its_bound_with_readers(tmp_path, collected, monkeypatch):
    """A folder of 300 loose checkpoints: each process keeps at most MAX_ENTRIES_PER_BUCKET entries of it,
    and so does the parent once it takes in what its readers kept."""
    monkeypatch.setattr(cache, "MAX_ENTRIES_PER_BUCKET", 40)
    folder = tmp_path / "t" / "epochs"
    for n in range(120):
        syn.write_torch_zip(folder / f"epoch={n}.pt")
    cache.configure()
    try:
        assert len(list(scan.iter_checkpoints(tmp_path / "t", processes=3))) == 120
        assert collected and all(collected)
        assert len(cache.shared()._buckets[str(folder)].entries) == 40
    finally:
        cache.configure()


def test_a_reader_past_the_cache_cap_writes_no_cache_file(tmp_path, collected, monkeypatch):
    """Past MAX_MEMORY_BUCKETS folders the cache writes what it holds and forgets it, in the process that
    owns the cache; a reader keeps all it read (it goes back by pipe) and writes nothing."""
    root = _tree(tmp_path / "t")
    monkeypatch.setattr(cache, "MAX_MEMORY_BUCKETS", 16)
    writers = tmp_path / "writers"
    real = cache._write_cache_file

    def noted(*args):
        with open(writers, "a") as f:
            f.write(f"{os.getpid()}\n")
        return real(*args)

    monkeypatch.setattr(cache, "_write_cache_file", noted)
    cache.configure()
    try:
        one = [i.to_json() for i in scan.iter_checkpoints(root, processes=3)]
        assert collected and all(collected)
        cache.shared().flush()
    finally:
        cache.configure()
    assert writers.read_text().split() and set(writers.read_text().split()) == {str(os.getpid())}
    assert one == _scan(root, 1)[0]


def test_a_failing_child_has_its_chunk_read_here(tmp_path, collected, monkeypatch):
    root = _tree(tmp_path / "t")
    one = _scan(root, 1)

    def broken_export(results, begun):
        raise RuntimeError("child failed")

    real = forked.streamed
    monkeypatch.setattr(
        forked,
        "streamed",
        lambda items, n, *, begin, export, absorb: real(items, n, begin=begin, export=broken_export, absorb=absorb),
    )
    assert _scan(root, 2) == one
    assert collected and not any(collected)


def test_nothing_forks_while_another_thread_runs(monkeypatch):
    monkeypatch.undo()  # the real thread count
    monkeypatch.setattr(forked, "MIN_PER_PROCESS", 10)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert forked.other_threads() and not forked.can_fork(4)
    finally:
        stop.set()
        t.join()
    monkeypatch.setattr(forked, "other_threads", lambda: False)
    assert forked.can_fork(4) and forked.can_fork(2)
    assert not forked.can_fork(1)


def test_ls_gives_the_same_json_with_one_or_two_processes(tmp_path):
    root = _tree(tmp_path / "t")
    syn.make_tree(root / "more", 2 * forked.MIN_PER_PROCESS_DEFAULT)  # the child process's own threshold
    outs = []
    for n in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(REPO), forked.PROCESSES_ENV: n, cache.ENV_DISABLE: "1"}
        p = subprocess.run(
            [sys.executable, "-m", "tui.cli", "ls", str(root), "--json"], capture_output=True, text=True, env=env
        )
        assert p.returncode == 0, p.stderr
        outs.append((p.stdout, p.stderr))
    assert outs[0] == outs[1] and outs[0][0].count("\n") > 2 * forked.MIN_PER_PROCESS_DEFAULT


def test_a_forked_scan_notes_what_one_process_notes(tmp_path, collected):
    """What the children saw and looked up joins the parent's log: a snapshot checks the same paths."""
    root = _tree(tmp_path / "t")
    for group in sorted(root.glob("group_*"))[-3:]:  # in the last chunks: a tag looked up, not there
        (group / "ds" / "latest").write_text("global_step999")
    logs = []
    for n in (1, 3):
        cache.configure(enabled=False)
        try:
            with readlog.recording() as log:
                list(scan.iter_checkpoints(root, log=log, processes=n))
        finally:
            cache.configure()
        logs.append((log.seen, log.lookups, log.unsteady))
    assert len(collected) >= 2 and all(collected)
    assert logs[0] == logs[1]
    assert any(p.endswith("global_step999") for p in {**logs[0][0], **logs[0][1]})


class _Number:
    """A deferred item answering its own number (it pickles: a reader is handed it)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def finish(self) -> list[int]:
        return [self.k]


def _numbers(n: int, walked: list[int] | None = None):
    """Deferred items answering their own number; ``walked`` notes each as the walk produces it."""
    for k in range(n):
        if walked is not None:
            walked.append(k)
        yield _Number(k)


def _stream(n: int, processes: int, **hooks):
    return forked.streamed(
        _numbers(n),
        processes,
        begin=hooks.get("begin", lambda: None),
        export=hooks.get("export", lambda results, begun: os.getpid()),
        absorb=hooks.get("absorb", lambda payload, results: None),
    )


@pytest.mark.parametrize("n", [0, 1, 9, 10, 37, 250, 1001])
@pytest.mark.parametrize("processes", [2, 3])
def test_streamed_results_come_in_walk_order(monkeypatch, n, processes):
    monkeypatch.setattr(forked, "LOCAL", 3)
    pids: list[int] = []
    got = list(_stream(n, processes, absorb=lambda payload, results: pids.append(payload)))
    assert got == list(range(n))
    assert os.getpid() not in pids  # what came through a pipe was read by a child
    if n >= 250:
        assert pids  # some chunk went to a child


def test_streamed_hands_on_while_the_walk_goes_on(monkeypatch):
    """A child gets its chunk before the walk has produced the rest: the walk and the reads overlap."""
    monkeypatch.setattr(forked, "LOCAL", 3)
    walked: list[int] = []
    seen_at_fork: list[int] = []
    real = forked._fork
    monkeypatch.setattr(forked, "_fork", lambda *a: seen_at_fork.append(len(walked)) or real(*a))
    out = list(
        forked.streamed(_numbers(500, walked), 2, begin=lambda: None, export=lambda r, b: None, absorb=lambda p, r: None)
    )
    assert out == list(range(500))
    assert seen_at_fork and seen_at_fork[0] < 500


def test_readers_are_forked_once_each_and_handed_many_chunks(monkeypatch):
    monkeypatch.setattr(forked, "LOCAL", 3)
    forks, sends = [], []
    real_fork, real_send = forked._fork, forked._Readers._send
    monkeypatch.setattr(forked, "_fork", lambda *a: forks.append(1) or real_fork(*a))
    monkeypatch.setattr(
        forked._Readers, "_send", lambda self, r, part: sends.append(r.pid) or real_send(self, r, part)
    )
    items = (_SlowHere(k) for k in range(3000))
    got = forked.streamed(items, 2, begin=lambda: None, export=lambda r, b: None, absorb=lambda p, r: None)
    assert list(got) == list(range(3000))
    assert len(forks) <= 2 and len(sends) > len(forks)  # a reader reads chunk after chunk


class _SlowHere(_Number):
    """Takes 2 ms in the test's own process, none in a reader: however slowly readers start on a busy
    machine, this process cannot read everything before they are handed some."""

    parent = os.getpid()

    def finish(self) -> list[int]:
        if os.getpid() == self.parent:
            time.sleep(0.002)
        return [self.k]


class _DiesInAReader(_SlowHere):
    """Kills the process reading it when that is not the test's own (a reader crashing mid-chunk)."""

    def finish(self) -> list[int]:
        if os.getpid() != self.parent and self.k >= 100:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().finish()


def test_a_reader_killed_mid_chunk_has_its_chunk_read_here(monkeypatch, collected):
    monkeypatch.setattr(forked, "LOCAL", 3)
    items = (_DiesInAReader(k) for k in range(1500))
    got = list(
        forked.streamed(items, 2, begin=lambda: None, export=lambda r, b: None, absorb=lambda p, r: None)
    )
    assert got == list(range(1500))
    assert False in collected  # a chunk failed (its reader killed): read here
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every reader reaped


class _SlowInAReader(_Number):
    """Takes 30 s in a reader (a hung filesystem), no time here."""

    parent = os.getpid()

    def finish(self) -> list[int]:
        if os.getpid() != self.parent:
            time.sleep(30)
        return [self.k]


def _within(seconds: int):
    def too_long(signum, frame):
        raise TimeoutError("hung")

    old = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(seconds)
    return old


def test_an_interrupt_while_waiting_for_a_reader_kills_it(monkeypatch):
    """Ctrl-C (or a SIGINT to this process alone) while the results of a reader stuck on a slow file are
    awaited: the reader is killed, not waited for."""
    monkeypatch.setattr(forked, "LOCAL", 3)

    def interrupted(reader):
        raise KeyboardInterrupt

    monkeypatch.setattr(forked, "_receive", interrupted)
    old = _within(10)
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            list(forked.streamed((_SlowInAReader(k) for k in range(300)), 2,
                                 begin=lambda: None, export=lambda r, b: None, absorb=lambda p, r: None))  # fmt: skip
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - started < 10
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every reader reaped


def test_two_streams_at_once_each_close_without_waiting_for_the_other(monkeypatch):
    """The second stream's readers are forked while the first one's live, holding its pipes: closing the
    first must not wait for an end of input its readers never see."""
    monkeypatch.setattr(forked, "LOCAL", 3)
    first, second = _stream(400, 2), _stream(400, 2)
    old = _within(10)
    try:
        assert [next(first) for _ in range(50)] == list(range(50))
        assert [next(second) for _ in range(50)] == list(range(50))
        first.close()
        assert list(second) == list(range(50, 400))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_readers_leave_when_the_scanning_process_dies(tmp_path):
    """A reader waits for its next chunk on a pipe only its parent writes: the parent gone, it leaves."""
    script = tmp_path / "dies.py"
    script.write_text(
        "import os, sys\n"
        "from tui.core import forked\n"
        "from tests.core.test_forked import _Number\n"
        "forked.other_threads = lambda: False\n"
        "items = (_Number(k) for k in range(5000))\n"
        "stream = forked.streamed(items, 2, begin=lambda: None, export=lambda r, b: os.getpid(),\n"
        "                         absorb=lambda p, r: print(p, flush=True))\n"
        "for k in stream:\n"
        "    if k == 2000:\n"
        "        os._exit(0)  # no clean-up: the readers are left waiting\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    pids = {int(line) for line in p.stdout.split()}
    assert pids
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.05)
    assert not any(_running(pid) for pid in pids)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has left, not yet reaped
    except FileNotFoundError:
        return False


def test_stopping_early_leaves_no_child_behind(monkeypatch):
    monkeypatch.setattr(forked, "LOCAL", 3)
    stream = _stream(400, 3)
    assert [next(stream) for _ in range(5)] == list(range(5))
    stream.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every child reaped


def test_no_fork_with_one_process(monkeypatch):
    monkeypatch.setattr(forked, "_fork", lambda *a: pytest.fail("forked"))
    assert list(_stream(300, 1)) == list(range(300))


@pytest.mark.parametrize("n", [1, 5, 9, 11, 33])
def test_few_items_with_the_real_sizes(monkeypatch, n):
    """Fewer items than one read here, or than a child's least: every one comes back, nothing spins."""
    monkeypatch.undo()  # the module's own sizes
    monkeypatch.setattr(forked, "other_threads", lambda: False)

    def too_long(signum, frame):
        raise TimeoutError("streamed spun")

    old = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(20)
    try:
        assert list(_stream(n, 2)) == list(range(n))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
