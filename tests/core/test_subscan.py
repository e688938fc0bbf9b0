"""The app's first scan in a process of its own (tui.core.subscan): the records one process would yield,
in its order, the snapshot and cache written for the next start; a child that fails or sends garbage
is a SubscanFailed (the caller scans here), never a wrong or partial list taken as whole; a cancelled
scan stops its child."""

from __future__ import annotations

import os
import sys
import time

import pytest

from tests.fixtures import synthetic as syn
from tui.app import tasks
from tui.core import cache, snapshot, subscan
from tui.core.scan import scan

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the forked reads: POSIX only")


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.setenv("CKPT_TUI_PROCESSES", "2")
    root = tmp_path / "t"
    syn.make_tree(root, 30)
    syn.write_run(root, "run1", folds=2, steps=(2, 4))
    return root


def test_the_child_sends_what_one_process_finds_and_leaves_a_snapshot(tree):
    time.sleep(cache.RACY_SECONDS + 0.2)  # (the child's own: 2 s)  # the child trusts no file changed in its last RACY_SECONDS
    got = [i.to_json() for i in subscan.Subscan(tree).records()]
    assert got == [i.to_json() for i in scan(tree)] and len(got) > 30
    cache.configure()  # this process's cache reads what the child wrote
    replayed = snapshot.replay(os.path.abspath(tree))
    assert replayed is not None and [i.to_json() for i in replayed[0]] == got


def test_a_child_that_dies_or_sends_garbage_is_a_failure(tree, monkeypatch, tmp_path):
    for script in ("import sys; sys.exit(3)", 'print("{not json")', 'print(\'{"path": "x"}\')'):
        fake = tmp_path / "fake.py"
        fake.write_text(script)
        monkeypatch.setattr(subscan, "_command", lambda root, f=fake: [sys.executable, str(f)])
        with pytest.raises(subscan.SubscanFailed):
            list(subscan.Subscan(tree).records())


def test_the_app_falls_back_to_scanning_here(tree, monkeypatch):
    monkeypatch.setattr(subscan, "_command", lambda root: [sys.executable, "-c", "raise SystemExit(1)"])
    first = tasks.start_first_scan(tree)
    assert first is not None
    batches = list(tasks.scan_batches(tree, cancelled=lambda: False, first=first))
    assert [i.to_json() for b in batches for i in b] == [i.to_json() for i in scan(tree)]


def test_a_child_only_where_more_than_one_process_reads(tree, monkeypatch):
    first = tasks.start_first_scan(tree)
    assert first is not None
    got = [i.to_json() for b in tasks.scan_batches(tree, cancelled=lambda: False, first=first) for i in b]
    assert got == [i.to_json() for i in scan(tree)]
    with pytest.raises(subscan.SubscanFailed):  # a child's records are read once
        list(first.records())
    monkeypatch.setenv("CKPT_TUI_PROCESSES", "1")
    assert tasks.start_first_scan(tree) is None


def test_a_child_never_read_is_stopped_by_close(tree, monkeypatch):
    monkeypatch.setattr(subscan, "_command", lambda root: [sys.executable, "-c", "import time; time.sleep(60)"])
    first = subscan.Subscan(tree)
    start = time.monotonic()
    first.close()
    assert time.monotonic() - start < 5
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_a_cancelled_scan_stops_its_child(tree, monkeypatch):
    monkeypatch.setattr(subscan, "_command", lambda root: [sys.executable, "-c", "import time; time.sleep(60)"])
    start = time.monotonic()
    answers = iter([False])  # cancelled once the child has started
    assert list(subscan.Subscan(tree).records(cancelled=lambda: next(answers, True))) == []
    assert time.monotonic() - start < 5
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # the child was reaped


def test_no_child_where_a_snapshot_may_answer(tree, monkeypatch):
    monkeypatch.setattr(cache, "RACY_SECONDS", -1.0)  # the files the test just wrote may be remembered
    assert not snapshot.remembered(tree)
    list(snapshot.iter_checkpoints(tree))  # a scan here leaves a snapshot
    assert snapshot.remembered(tree)
    assert tasks.start_first_scan(tree) is None  # the app replays it itself
    got = [i.to_json() for b in tasks.scan_batches(tree, cancelled=lambda: False) for i in b]
    assert got == [i.to_json() for i in scan(tree)]
