"""The whole-scan snapshot: a repeat answers exactly what a scan of the tree as it is now answers, without
walking it, and any change to a folder the scan listed or a file it stat'd or read sends it back to the
walk. Corrupt, foreign, stale-code, racy, cancelled and unfinished scans are never used or written."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
import types
import zlib
from pathlib import Path

import pytest

from tests.fixtures import synthetic as syn
from tui.core import cache, readlog, scan, snapshot
from tui.core.model import CheckpointInfo
from tui.core.scan_reads import FolderRead

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def trusted_now(monkeypatch):
    """Files written by the test are seconds old; let them be remembered (the racy rule has its own test)."""
    monkeypatch.setattr(cache, "RACY_SECONDS", -1.0)


@pytest.fixture
def walks(monkeypatch) -> list[str]:
    """The roots walked by a scan (a snapshot's answer walks nothing)."""
    calls: list[str] = []
    real = scan.iter_checkpoints

    def counting(root, **kw):
        if kw.get("log") is not None:  # a browse's walk, not truth()'s
            calls.append(os.fspath(root))
        return real(root, **kw)

    monkeypatch.setattr(scan, "iter_checkpoints", counting)
    return calls


def remembered(root: Path, errors: list[str] | None = None) -> list[dict]:
    """A browse as a new command runs it: the in-memory cache dropped, the files read back."""
    cache.shared().flush()
    cache.configure()
    return [i.to_json() for i in snapshot.iter_checkpoints(root, errors=errors)]


def truth(root: Path) -> list[dict]:
    previous = cache.shared()
    cache.configure(enabled=False)
    try:
        return [i.to_json() for i in scan.scan(root)]
    finally:
        cache.configure(directory=previous.directory)


def _tree(root: Path) -> Path:
    syn.make_tree(root, 30)  # groups 0-2
    syn.write_run(root, "run1", folds=2, steps=(2, 4), promote_fold=0)
    (root / "data").mkdir()
    (root / "data" / "data.bin").write_bytes(b"\x00" * 64)  # not a pickle: sniffed and skipped
    return root


def test_a_repeat_walks_nothing_and_answers_what_a_scan_answers(tmp_path, trusted_now, walks):
    root = _tree(tmp_path / "t")
    first = remembered(root)
    assert walks == [str(root)]
    again = remembered(root)
    assert walks == [str(root)]  # answered from the snapshot
    assert again == first == truth(root)
    assert len(first) > 30


def _touch(p: Path) -> None:
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 1_000_000))


def _truncate(p: Path) -> None:
    os.truncate(p, p.stat().st_size - 7)


def _replace_by_rename(p: Path) -> None:
    tmp = p.with_name(p.name + ".new")
    tmp.write_bytes(p.read_bytes())
    os.utime(tmp, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns))
    os.replace(tmp, p)


def _rewrite_same_size_and_mtime(p: Path) -> None:
    st = p.stat()
    raw = bytearray(p.read_bytes())
    raw[8:10] = b"[1"  # the header no longer parses as an object
    p.write_bytes(raw)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # only the ctime tells


WEIGHTS = "group_0000/bert_fold_0/model.safetensors"


def _add_checkpoint(root: Path) -> None:
    syn.write_hf_model(root / "group_0001" / "new" / "deep" / "bert_fold_3")


def _remove_a_file(root: Path) -> None:
    (root / "group_0000" / "bert_fold_0" / "config.json").unlink()


def _best_moves(root: Path) -> None:
    state = root / "group_0000" / "hf_out" / "checkpoint-6" / "trainer_state.json"
    data = json.loads(state.read_text())
    data["best_model_checkpoint"] = str(root / "group_0000" / "hf_out" / "checkpoint-2")
    state.write_text(json.dumps(data))


def _data_becomes_a_pickle(root: Path) -> None:
    (root / "data" / "data.bin").write_bytes(pickle.dumps({"w": 1}, protocol=2))


def _promoted_from_another_fold(root: Path) -> None:
    manifest = root / "run1" / "promoted" / "tiny-bert_fold_0" / "ckpt_manifest.json"
    data = json.loads(manifest.read_text())
    data["source"] = "tiny-bert_fold_1"
    manifest.write_text(json.dumps(data))


def _folder_renamed(root: Path) -> None:
    os.rename(root / "group_0002" / "lora", root / "group_0002" / "lora_renamed")


CHANGES = {
    "touch": lambda root: _touch(root / WEIGHTS),
    "truncate": lambda root: _truncate(root / WEIGHTS),
    "replace_by_rename": lambda root: _replace_by_rename(root / WEIGHTS),
    "rewrite_same_size_and_mtime": lambda root: _rewrite_same_size_and_mtime(root / WEIGHTS),
    "add_checkpoint": _add_checkpoint,
    "remove_a_file": _remove_a_file,
    "best_moves": _best_moves,
    "data_becomes_a_pickle": _data_becomes_a_pickle,
    "promoted_from_another_fold": _promoted_from_another_fold,
    "folder_renamed": _folder_renamed,
}


@pytest.mark.parametrize("change", CHANGES, ids=str)
def test_every_change_sends_the_repeat_back_to_the_walk(tmp_path, trusted_now, walks, change):
    root = _tree(tmp_path / "t")
    before = remembered(root)
    time.sleep(0.01)  # a later ctime on filesystems with coarse timestamps
    CHANGES[change](root)
    after = remembered(root)
    assert walks == [str(root), str(root)]
    assert after == truth(root)
    assert (after == before) == (change == "touch")  # a touch changes no answer, every other change one
    assert remembered(root) == after and len(walks) == 2  # and the new scan is remembered


def test_who_holds_a_lock_is_judged_again_on_every_replay(tmp_path, trusted_now, walks, monkeypatch):
    run = syn.write_run(tmp_path, "run1", folds=1, steps=(2,))
    (run / "checkpoints" / "fold_0" / "step_2" / "ckpt_manifest.json").unlink()
    beat = time.time()
    (run / ".lock").write_text(json.dumps({"pid": 4242, "host": "node-elsewhere", "heartbeat_s": 60, "heartbeat": beat}))
    step = "run1/checkpoints/fold_0/step_2"

    def problems_at(now: float) -> tuple[list[str], list[str]]:
        monkeypatch.setattr("tui.core.process.time.time", lambda: now)
        got = {i["path"]: i["problems"] for i in remembered(tmp_path)}
        return got[step], {i["path"]: i["problems"] for i in truth(tmp_path)}[step]

    first, _ = problems_at(beat + 20)
    assert any("run held by pid 4242 on node-elsewhere (heartbeat 20 s ago)" in p for p in first)
    later, expected = problems_at(beat + 7200)
    assert later == expected
    assert any("stale .lock (pid 4242 on node-elsewhere: no heartbeat for 7200 s)" in p for p in later)
    assert len(walks) == 1  # the second answer came from the snapshot, its lock line judged anew


def test_a_scan_of_files_changed_within_the_racy_window_is_not_remembered(tmp_path, walks):
    root = _tree(tmp_path / "t")  # written just now
    assert remembered(root) == remembered(root) == truth(root)
    assert len(walks) == 2


def _snapshot_files() -> list[Path]:
    base = Path(cache.shared().directory)
    return [p for p in base.rglob("*.cache") if p.read_bytes().startswith(snapshot.FORMAT.encode())]


def test_a_corrupt_snapshot_is_ignored_and_rewritten(tmp_path, trusted_now, walks):
    root = _tree(tmp_path / "t")
    expected = remembered(root)
    [path] = _snapshot_files()
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(raw)
    assert remembered(root) == expected and len(walks) == 2
    assert remembered(root) == expected and len(walks) == 2  # rewritten by the second walk


def test_a_snapshot_of_another_root_or_older_code_is_not_used(tmp_path, trusted_now, walks, monkeypatch):
    a, b = _tree(tmp_path / "a"), tmp_path / "b"
    syn.write_hf_model(b / "only_fold_0")
    remembered(a)
    remembered(b)
    [path_a, path_b] = sorted(_snapshot_files(), key=lambda p: p.stat().st_size, reverse=True)
    path_b.write_bytes(path_a.read_bytes())  # an intact file (good CRC) that answers for another root
    assert remembered(b) == truth(b) and walks[-1] == str(b) and len(walks) == 3
    monkeypatch.setattr(snapshot, "_stamp", "another version")
    assert remembered(a) == truth(a) and len(walks) == 4


def test_cancelled_or_abandoned_scans_are_not_remembered(tmp_path, trusted_now, walks):
    root = _tree(tmp_path / "t")
    cache.configure()
    list(snapshot.iter_checkpoints(root, cancelled=lambda: True))
    first = next(iter(snapshot.iter_checkpoints(root)))  # the caller stops after one record
    assert first is not None
    assert not _snapshot_files()
    assert remembered(root) == truth(root) and len(walks) == 3


def test_no_snapshot_with_the_cache_off(tmp_path, trusted_now, walks, monkeypatch):
    root = _tree(tmp_path / "t")
    monkeypatch.setenv(cache.ENV_DISABLE, "1")
    assert remembered(root) == remembered(root) == truth(root)
    assert len(walks) == 2
    monkeypatch.delenv(cache.ENV_DISABLE)
    cache.configure()
    assert not _snapshot_files()


def test_a_path_seen_changed_during_the_scan_is_not_remembered(tmp_path, trusted_now):
    st = os.stat(tmp_path)
    with readlog.recording() as log:
        readlog.note("/x", st)
        readlog.note("/x", st)
        assert not log.unsteady
        readlog.note("/x", None)
        assert log.unsteady
    log.finished = True
    assert not snapshot.save(str(tmp_path), log, [], [])


def test_walk_errors_are_replayed(tmp_path, trusted_now, walks):
    root = tmp_path / "t"
    syn.write_hf_model(root / "fold_0")
    syn.deep_folders(root, 70)
    errors_first: list[str] = []
    errors_again: list[str] = []
    assert remembered(root, errors_first) == remembered(root, errors_again)
    assert len(walks) == 1
    assert errors_first == errors_again and any("nested deeper than" in e for e in errors_first)


def test_records_survive_the_round_trip_through_json(tmp_path):
    root = _tree(tmp_path / "t")
    infos = scan.scan(root)
    assert any(i.metric is not None for i in infos) and any(i.dtypes for i in infos)
    assert [CheckpointInfo.from_json(json.loads(json.dumps(i.to_json()))) for i in infos] == infos


def test_a_repeat_ls_imports_neither_the_walk_nor_a_reader(tmp_path):
    root = _tree(tmp_path / "t")
    time.sleep(cache.RACY_SECONDS + 0.2)  # old enough to remember
    child = (
        "import sys; from tui.cli import main; code = main(sys.argv[1:]); "
        "sys.stderr.write('WALKED=%s\\n' % ('tui.core.scan' in sys.modules)); sys.exit(code)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    outs = []
    for _ in range(2):
        p = subprocess.run([sys.executable, "-c", child, "ls", str(root), "--json"], capture_output=True, text=True, env=env)
        assert p.returncode == 0, p.stderr
        outs.append((p.stdout, p.stderr.strip().splitlines()[-1]))
    assert outs[0][1] == "WALKED=True" and outs[1][1] == "WALKED=False"
    assert outs[0][0] == outs[1][0]
    assert [i["path"] for i in json.loads(outs[1][0])] == [i["path"] for i in truth(root)]


def test_the_snapshot_file_is_compressed_and_bounded(tmp_path, trusted_now, monkeypatch):
    root = _tree(tmp_path / "t")
    remembered(root)
    [path] = _snapshot_files()
    head, _, packed = path.read_bytes().partition(b"\n")
    text, _, seen = zlib.decompress(packed).partition(b"\n")
    body = json.loads(text)
    assert body["root"] == str(root) and len(body["infos"]) == len(truth(root))
    paths = seen[: body["paths"]].split(b"\0")
    assert os.fsencode(root) in paths and len(seen) - body["paths"] == snapshot._KEY.size * len(paths)
    assert len(packed) < (len(text) + len(seen)) // 4
    monkeypatch.setattr(snapshot, "MAX_TEXT", 100)  # a body expanding past the bound is not read
    assert snapshot.replay(str(root)) is None


def test_names_that_are_not_utf8_or_hold_escape_codes_are_replayed(tmp_path, trusted_now, walks):
    root = tmp_path / "t"
    root.mkdir()
    for raw in (b"fold_\xff_0", b"\x1b[31mred_fold_1"):
        syn.write_hf_model(Path(os.fsdecode(os.path.join(os.fsencode(root), raw))))
    first = remembered(root)
    again = remembered(root)
    assert len(walks) == 1 and again == first == truth(root)
    assert {i["path"] for i in again} == {os.fsdecode(b"fold_\xff_0"), "\x1b[31mred_fold_1"}


# --- inputs a scan depends on beyond the folders it lists and the files it reads -----------------------


def _remembered_then_changed(root: Path, change, walks: list[str]) -> tuple[list[dict], list[dict]]:
    """(the answer before ``change``, the answer after it), each checked against a scan of the tree then."""
    before = remembered(root)
    assert remembered(root) == before and len(walks) == 1  # remembered
    time.sleep(0.01)
    change()
    after = remembered(root)
    assert after == truth(root)
    assert after != before  # the change changed the answer: the test exercises something
    return before, after


@pytest.mark.parametrize("where", ["loose", "in_checkpoint"])
def test_a_dangling_link_whose_target_appears(tmp_path, trusted_now, walks, where):
    # e.g. weights linked onto a disk that is mounted later: the link's folder does not change
    root, outside = _tree(tmp_path / "t"), tmp_path / "outside"
    outside.mkdir()
    link = root / ("loose.safetensors" if where == "loose" else "group_0000/bert_fold_0/extra.safetensors")
    os.symlink(outside / "w.safetensors", link)
    _remembered_then_changed(root, lambda: syn.write_safetensors(outside / "w.safetensors", syn.tiny_bert_tensors()), walks)


def test_a_manifest_entry_under_a_linked_folder(tmp_path, trusted_now, walks):
    # the walk never enters a linked folder, but the manifest check stats the files listed under it
    root, outside = tmp_path / "t", tmp_path / "outside"
    fold = root / "fold_0"
    syn.write_hf_model(fold)
    outside.mkdir()
    (outside / "w.bin").write_bytes(b"\x00" * 100)
    os.symlink(outside, fold / "extra")
    manifest = syn.write_manifest(fold, kind="fold-model", step=1, fold=0)
    manifest["files"]["extra/w.bin"] = {"size": 100, "sha256": "0" * 64}
    syn.write_json(fold / "ckpt_manifest.json", manifest)
    _, after = _remembered_then_changed(root, lambda: os.truncate(outside / "w.bin", 50), walks)
    assert not after[0]["complete"]


def test_a_best_checkpoint_named_below_a_sibling_of_the_root(tmp_path, trusted_now, walks):
    # ROOT is a checkpoint-N whose trainer_state names "../other/checkpoint-10": that folder is looked up
    base = tmp_path / "x"
    (base / "other").mkdir(parents=True)
    root = base / "checkpoint-10"
    syn.write_hf_checkpoint(root, 10, best_model_checkpoint="../other/checkpoint-10")
    before, _ = _remembered_then_changed(root, lambda: (base / "other" / "checkpoint-10").mkdir(), walks)
    assert before[0]["best"]


def test_a_promotion_manifest_behind_a_linked_promoted_folder(tmp_path, trusted_now, walks):
    root, outside = tmp_path / "t", tmp_path / "outside"
    run = syn.write_run(root, "run1", folds=1, steps=(2,), promote_fold=0)
    os.rename(run / "promoted", outside)
    os.symlink(outside, run / "promoted")
    manifest = outside / "tiny-bert_fold_0" / "ckpt_manifest.json"
    text = manifest.read_bytes()
    manifest.unlink()
    _, after = _remembered_then_changed(root, lambda: manifest.write_bytes(text), walks)
    assert any(i["promoted"] for i in after)


def test_blocks_written_out_after_the_timestamps_send_the_repeat_back(tmp_path, trusted_now, monkeypatch):
    # ZFS counts a file's blocks when it writes the data out, seconds after its mtime and ctime: the
    # allocated bytes a record shows follow them
    root = _tree(tmp_path / "t")
    remembered(root)
    assert snapshot.replay(str(root)) is not None
    real_stat, target = os.stat, os.fsencode(root / WEIGHTS)

    def later(path, *args, **kw):
        st = real_stat(path, *args, **kw)
        if os.fsencode(path) != target:
            return st
        fields = {name: getattr(st, name) for name in dir(st) if name.startswith("st_")}
        return types.SimpleNamespace(**{**fields, "st_blocks": st.st_blocks + 8})

    monkeypatch.setattr(os, "stat", later)
    assert snapshot.replay(str(root)) is None


def test_another_user_or_interpreter_does_not_replay(tmp_path, trusted_now, monkeypatch):
    root = _tree(tmp_path / "t")
    remembered(root)
    assert snapshot.replay(str(root)) is not None
    with monkeypatch.context() as m:  # what may be read depends on who reads
        m.setattr(os, "geteuid", lambda: os.getuid() + 1)
        assert snapshot.replay(str(root)) is None
    with monkeypatch.context() as m:  # the interpreter words some problems (a JSON error)
        m.setattr(sys, "version", sys.version + " (another)")
        m.setattr(snapshot, "_stamp", None)
        assert snapshot.replay(str(root)) is None
    monkeypatch.setattr(snapshot, "_stamp", None)
    assert snapshot.replay(str(root)) is not None


def test_a_cache_directory_of_another_user_is_not_used(tmp_path, monkeypatch):
    (tmp_path / "c").mkdir()
    assert cache.configure(directory=str(tmp_path / "c")).directory == str(tmp_path / "c")
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(tmp_path / "c").st_uid + 1)
    assert cache.configure(directory=str(tmp_path / "c")).directory is None


def test_a_folder_listed_by_another_reader_meanwhile_covers_nothing(tmp_path, trusted_now, walks, monkeypatch):
    # the app may inspect (scan.describe lists folders) while its scan records: only a folder the scan
    # noted answers for the names looked up in it
    base = tmp_path / "x"
    (base / "other").mkdir(parents=True)
    root = base / "checkpoint-10"
    syn.write_hf_checkpoint(root, 10, best_model_checkpoint="../other/checkpoint-10")
    real = FolderRead._check

    def inspected_meanwhile(self):
        scan.describe(base, base / "other")
        return real(self)

    monkeypatch.setattr(FolderRead, "_check", inspected_meanwhile)
    _remembered_then_changed(root, lambda: (base / "other" / "checkpoint-10").mkdir(), walks)


def test_a_root_holding_our_own_cache_folder_is_remembered(tmp_path, trusted_now, walks, monkeypatch):
    """``ls ~`` walks ~/.cache: the cache folder is skipped, else each run's own writes undo its snapshot."""
    root = tmp_path / "home"
    syn.write_hf_model(root / "run" / "fold_0")
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / ".cache"))
    first = remembered(root)
    assert (root / ".cache" / "ckpt-tui").is_dir()  # created by the first run: its folder changed, once
    assert remembered(root) == first and len(walks) == 2
    for _ in range(2):  # from now on the cache's own writes change nothing the snapshot checks
        assert remembered(root) == first == truth(root)
    assert len(walks) == 2
