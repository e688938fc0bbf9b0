"""A first scan read by forked processes answers exactly what one process answers: the same records in the
same order, the same errors, a summary cache that holds every entry and a snapshot that replays; a child
that fails has its chunk read by the parent; nothing forks while another thread runs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.fixtures import synthetic as syn
from tui.core import cache, forked, readlog, scan, snapshot

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(forked, "MIN_PER_PROCESS", 10)
    # threads other tests of this session left running (pools, workers) would keep every fork off here
    monkeypatch.setattr(forked, "other_threads", lambda: False)
    monkeypatch.setattr(cache, "RACY_SECONDS", -1.0)  # files written by the test may be remembered


@pytest.fixture
def collected(monkeypatch) -> list[bool]:
    """Whether each child's chunk came back from the child (True) or was read here (False)."""
    out: list[bool] = []
    real = forked._collect

    def spy(child):
        got = real(child)
        out.append(got is not None)
        return got

    monkeypatch.setattr(forked, "_collect", spy)
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
    assert collected == [True, True]
    assert three == one
    assert any("nested deeper than" in e for e in one[1]) and len(one[0]) > 60


def test_the_cache_and_the_snapshot_hold_what_the_children_read(tmp_path, collected, monkeypatch):
    root = _tree(tmp_path / "t")
    cache.configure()
    first = [i.to_json() for i in snapshot.iter_checkpoints(root, processes=2)]
    assert collected == [True]
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


def test_a_failing_child_has_its_chunk_read_here(tmp_path, collected, monkeypatch):
    root = _tree(tmp_path / "t")
    one = _scan(root, 1)

    def broken_export(results):
        raise RuntimeError("child failed")

    real = forked.in_processes
    monkeypatch.setattr(
        forked, "in_processes", lambda items, n, *, export, absorb: real(items, n, export=broken_export, absorb=absorb)
    )
    assert _scan(root, 2) == one
    assert collected == [False]


def test_nothing_forks_while_another_thread_runs(monkeypatch):
    monkeypatch.undo()  # the real thread count
    monkeypatch.setattr(forked, "MIN_PER_PROCESS", 10)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert forked.other_threads() and forked.can_fork(10_000, 4) == 1
    finally:
        stop.set()
        t.join()
    monkeypatch.setattr(forked, "other_threads", lambda: False)
    assert forked.can_fork(10_000, 4) == 4
    assert forked.can_fork(25, 4) == 2  # at least MIN_PER_PROCESS (10 here) items each
    assert forked.can_fork(10_000, 1) == 1


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
    assert collected == [True, True]
    assert logs[0] == logs[1]
    assert any(p.endswith("global_step999") for p in {**logs[0][0], **logs[0][1]})
