import json
import os
import time

import pytest

from tests.fixtures.ops import make_checkpoint, tree_hashes, write_file
from tui.core import trash as trash_mod
from tui.core.names import TRASH_DIR
from tui.core.trash import Trash, TrashError


def test_move_then_restore_is_byte_identical(tmp_path):
    ckpt = make_checkpoint(tmp_path / "run" / "checkpoint-10")
    before = tree_hashes(ckpt)
    trash = Trash(tmp_path)
    entry = trash.move(ckpt)
    assert not ckpt.exists()
    item = tmp_path / TRASH_DIR / entry.id / "item"
    assert tree_hashes(item) == before
    data = json.loads((tmp_path / TRASH_DIR / entry.id / "entry.json").read_text())
    assert data["original_path"] == "run/checkpoint-10"
    assert data["size_bytes"] == sum(p.stat().st_size for p in item.rglob("*") if p.is_file())
    assert set(data) >= {"id", "original_path", "deleted_at", "size_bytes"}
    assert [e.id for e in trash.list()] == [entry.id]
    trash.restore(entry.id)
    assert tree_hashes(ckpt) == before
    assert trash.list() == []


def test_move_is_a_rename_not_a_copy(tmp_path):
    f = write_file(tmp_path / "a.bin")
    inode = f.stat().st_ino
    entry = Trash(tmp_path).move(f)
    assert (tmp_path / TRASH_DIR / entry.id / "item").stat().st_ino == inode


def test_ids_sort_in_creation_order(tmp_path):
    trash = Trash(tmp_path)
    ids = [trash.move(write_file(tmp_path / f"f{i}")).id for i in range(12)]
    assert ids == sorted(ids)
    assert [e.id for e in trash.list()] == ids
    assert len(set(ids)) == 12


def test_restore_refuses_when_original_path_is_occupied(tmp_path):
    f = write_file(tmp_path / "x" / "model.bin", b"old")
    trash = Trash(tmp_path)
    entry = trash.move(f)
    write_file(f, b"new")
    with pytest.raises(TrashError, match="exists again"):
        trash.restore(entry.id)
    assert f.read_bytes() == b"new"
    assert trash.list()[0].id == entry.id


def test_restore_recreates_missing_parent(tmp_path):
    f = write_file(tmp_path / "run" / "ckpt" / "w.bin", b"w")
    trash = Trash(tmp_path)
    entry = trash.move(f)
    (tmp_path / "run" / "ckpt").rmdir()
    trash.restore(entry.id)
    assert f.read_bytes() == b"w"


def test_refuses_other_filesystem(tmp_path, monkeypatch):
    f = write_file(tmp_path / "a.bin")
    real_lstat = os.lstat

    def fake_lstat(path, *a, **k):
        st = real_lstat(path, *a, **k)
        if str(path) == str(f):
            return os.stat_result((st.st_mode, st.st_ino, st.st_dev + 1, *tuple(st)[3:]))
        return st

    monkeypatch.setattr(trash_mod.os, "lstat", fake_lstat)
    with pytest.raises(TrashError, match="different filesystem"):
        Trash(tmp_path).move(f)
    assert f.exists()


@pytest.mark.parametrize("bad", ["../outside", "/etc/passwd", ".ckpt-trash", "."])
def test_move_refuses_paths_outside_root_or_the_trash(tmp_path, bad):
    root = tmp_path / "root"
    root.mkdir()
    write_file(tmp_path / "outside")
    Trash(root).folder.mkdir()
    with pytest.raises(TrashError):
        Trash(root).move(bad)
    assert (tmp_path / "outside").exists()


def test_hostile_entry_json_cannot_restore_outside_root(tmp_path):
    root = tmp_path / "root"
    f = write_file(root / "a.bin")
    trash = Trash(root)
    entry = trash.move(f)
    entry_file = root / TRASH_DIR / entry.id / "entry.json"
    data = json.loads(entry_file.read_text())
    data["original_path"] = "../escaped.bin"
    entry_file.write_text(json.dumps(data))
    with pytest.raises(TrashError, match="unsafe path"):
        trash.restore(entry.id)
    assert not (tmp_path / "escaped.bin").exists()


def test_broken_entries_are_listed_with_a_problem(tmp_path):
    trash = Trash(tmp_path)
    (trash.folder / "20260101T000000Z-00001").mkdir(parents=True)
    (trash.folder / "20260101T000000Z-00001" / "entry.json").write_text("{not json")
    [entry] = trash.list()
    assert "unreadable" in entry.problems[0]
    with pytest.raises(TrashError, match="unreadable"):
        trash.restore(entry.id)
    with pytest.raises(TrashError, match="not a trash id"):
        trash.restore("../x")


def test_bundle_move_and_restore(tmp_path):
    ckpt = make_checkpoint(tmp_path / "c")
    before = tree_hashes(ckpt)
    trash = Trash(tmp_path)
    entry = trash.move_files(ckpt, ["optimizer.pt", "scheduler.pt"], action="slim")
    assert not (ckpt / "optimizer.pt").exists() and (ckpt / "model.safetensors").exists()
    assert entry.files == ["optimizer.pt", "scheduler.pt"]
    assert entry.size_bytes == 550
    trash.restore(entry.id)
    assert tree_hashes(ckpt) == before


def test_empty_removes_everything_including_read_only(tmp_path):
    ckpt = make_checkpoint(tmp_path / "c")
    os.chmod(ckpt / "model.safetensors", 0o400)
    os.chmod(ckpt, 0o500)  # a read-only folder: moving it needs only its parent writable
    trash = Trash(tmp_path)
    trash.move(ckpt)
    freed = trash.empty()
    assert freed >= 1580
    assert trash.list() == []
    assert list(trash.folder.iterdir()) == []


def test_empty_never_follows_links(tmp_path):
    outside = write_file(tmp_path / "outside" / "keep.bin", b"keep")
    root = tmp_path / "root"
    (root / "c").mkdir(parents=True)
    os.symlink(outside.parent, root / "c" / "link")
    trash = Trash(root)
    trash.move(root / "c")
    trash.empty()
    assert outside.read_bytes() == b"keep"


def test_entries_survive_a_crash_between_entry_and_rename(tmp_path, monkeypatch):
    f = write_file(tmp_path / "a.bin")

    def boom(*a, **k):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(trash_mod.os, "rename", boom)
    with pytest.raises(TrashError, match="cannot move"):
        Trash(tmp_path).move(f)
    assert f.exists()
    assert Trash(tmp_path).list() == []


# --- hostile trash folders and entries (other users can write to ROOT) -------------------------------------


def _entry_id(n: int = 1) -> str:
    return f"20260101T000000Z-{n:05d}"


def test_a_symlinked_trash_is_refused_for_every_action(tmp_path):
    from tui.core.actions import execute, plan_trash_empty, restore, undo_last

    victim = write_file(tmp_path / "victim" / _entry_id() / "entry.json", json.dumps({"original_path": "x"}))
    write_file(victim.parent / "item", b"precious")
    write_file(tmp_path / "victim" / "notes" / "keep.txt", b"keep")
    root = tmp_path / "root"
    ckpt = make_checkpoint(root / "run" / "checkpoint-1")
    os.symlink(tmp_path / "victim", root / TRASH_DIR)
    before = tree_hashes(tmp_path / "victim")
    with pytest.raises(TrashError, match="symlink"):
        Trash(root).move(ckpt)
    with pytest.raises(TrashError, match="symlink"):
        Trash(root).move_files(ckpt, ["optimizer.pt"])
    with pytest.raises(TrashError, match="symlink"):
        Trash(root).list()
    with pytest.raises(TrashError, match="symlink"):
        Trash(root).empty()
    plan = plan_trash_empty(root)
    assert plan.items == [] and "symlink" in plan.refusals[0].reason
    execute(plan)
    assert not restore(root, _entry_id()).ok and not undo_last(root).ok
    assert tree_hashes(tmp_path / "victim") == before and ckpt.is_dir()


def test_a_trash_that_is_a_file_is_refused(tmp_path):
    write_file(tmp_path / TRASH_DIR, b"not a folder")
    with pytest.raises(TrashError, match="not a folder"):
        Trash(tmp_path).move(write_file(tmp_path / "a.bin"))
    assert (tmp_path / "a.bin").exists()


def _foreign_folders(trash_folder, outside):
    """Folders in the trash that ckpt-tui did not write, each holding a file that must survive."""
    good = {"id": _entry_id(9), "original_path": "a", "deleted_at": "", "size_bytes": 1}
    cases = {
        "not-our-name": None,  # no entry.json, a name we never use
        _entry_id(1): None,  # our name, no entry.json
        _entry_id(2): "{not json",
        _entry_id(3): json.dumps([1, 2]),
        _entry_id(4): json.dumps({**good, "id": _entry_id(3)}),  # names another entry
        _entry_id(5): json.dumps({**good, "id": _entry_id(5), "original_path": "/etc/passwd"}),
        _entry_id(6): json.dumps({**good, "id": _entry_id(6), "original_path": "../../escaped"}),
        _entry_id(7): json.dumps({**good, "id": _entry_id(7), "files": ["../../x"]}),
        _entry_id(8): json.dumps({**good, "id": _entry_id(8), "original_path": 5}),
    }
    for name, text in cases.items():
        write_file(trash_folder / name / "item" / "keep.bin", b"keep")
        if text is not None:
            write_file(trash_folder / name / "entry.json", text)
    link = trash_folder / _entry_id(10)  # entry.json a link to a valid entry elsewhere
    write_file(link / "item" / "keep.bin", b"keep")
    write_file(outside / "entry.json", json.dumps({**good, "id": _entry_id(10)}))
    os.symlink(outside / "entry.json", link / "entry.json")
    return [*cases, _entry_id(10)]


def test_trash_empty_deletes_only_entries_we_wrote(tmp_path):
    from tui.core.actions import execute, plan_trash_empty

    root = tmp_path / "root"
    trash = Trash(root)
    ours = trash.move(write_file(root / "a.bin"))
    foreign = _foreign_folders(trash.folder, tmp_path / "outside")
    listed = {e.id: e for e in trash.list()}
    assert set(listed) == {ours.id, *foreign}
    assert all(listed[f].problems and listed[f].foreign for f in foreign) and not listed[ours.id].problems
    plan = plan_trash_empty(root)
    assert [i.path for i in plan.items] == [ours.id]
    assert {r.path for r in plan.refusals} == set(foreign)
    execute(plan)
    trash.empty()
    for f in foreign:
        assert (trash.folder / f / "item" / "keep.bin").read_bytes() == b"keep"
        with pytest.raises(TrashError):
            trash.remove(f)
        with pytest.raises(TrashError):
            trash.restore(f)
    assert not (trash.folder / ours.id).exists()
    assert not (tmp_path / "escaped").exists() and not (root / "a").exists()


def test_restore_refuses_a_symlink_that_replaced_a_folder_on_the_way(tmp_path):
    import shutil

    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    ckpt = make_checkpoint(root / "run" / "checkpoint-1")
    write_file(ckpt / "sub" / "scheduler.pt", b"s")
    trash = Trash(root)
    bundle = trash.move_files(ckpt, ["optimizer.pt", "sub/scheduler.pt"])
    shutil.rmtree(ckpt / "sub")
    os.symlink(outside, ckpt / "sub")  # a subfolder of the bundle's files now leads out of ROOT
    with pytest.raises(TrashError, match="outside"):
        trash.restore(bundle.id)
    whole = trash.move(ckpt)
    os.rename(root / "run", root / "run.away")
    os.symlink(outside, root / "run")  # the item's parent folder now leads out of ROOT
    with pytest.raises(TrashError, match="not inside|outside"):
        trash.restore(whole.id)
    os.unlink(root / "run")
    os.symlink(trash.folder, root / "run")  # ... or into the trash
    with pytest.raises(TrashError):
        trash.restore(whole.id)
    assert os.listdir(outside) == [] and len(trash.list()) == 2


def test_killed_deletes_leave_no_visible_debris_and_empty_cleans_it(tmp_path):
    import signal
    import subprocess
    import sys

    root = tmp_path / "root"
    write_file(root / "a.bin")
    code = (
        "import os, signal, sys; from tui.core import trash as t\n"
        "t.os.rename = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
        "t.Trash(sys.argv[1]).move('a.bin')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(os.getcwd())}
    proc = subprocess.run([sys.executable, "-c", code, str(root)], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    trash = Trash(root)
    write_file(trash.folder / _entry_id(1) / ".entry.json.tmp", b"{")  # killed while writing entry.json
    (trash.folder / _entry_id(2)).mkdir()  # killed right after mkdir
    assert len(list(trash.folder.iterdir())) == 3 and (root / "a.bin").exists()
    assert trash.list() == []
    assert trash.clean_debris() == 0  # a delete in progress may own them for an instant
    assert trash.clean_debris(now=time.time() + 3600) == 3
    assert list(trash.folder.iterdir()) == []


def test_trash_empty_removes_a_killed_deletes_empty_entry(tmp_path):
    from tui.core.actions import execute, plan_trash_empty

    trash = Trash(tmp_path)
    write_file(trash.folder / _entry_id(1) / "entry.json", json.dumps({"id": _entry_id(1), "original_path": "a"}))
    os.utime(trash.folder / _entry_id(1), (time.time() - 3600,) * 2)
    plan = plan_trash_empty(tmp_path)
    assert [i.path for i in plan.items] == [_entry_id(1)] and execute(plan).ok
    assert list(trash.folder.iterdir()) == []


def test_slim_and_restore_never_reach_through_a_symlinked_subfolder(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_file(outside / "optimizer.pt", b"theirs")
    ckpt = make_checkpoint(root / "c")
    os.symlink(outside, ckpt / "sub")  # swapped in after the plan: its files are not the checkpoint's
    trash = Trash(root)
    with pytest.raises(TrashError, match="outside"):
        trash.move_files(ckpt, ["optimizer.pt", "sub/optimizer.pt"])
    assert (outside / "optimizer.pt").read_bytes() == b"theirs" and (ckpt / "optimizer.pt").exists()
    entry = trash.move_files(ckpt, ["optimizer.pt"])
    item = trash.folder / entry.id / "item"
    data = json.loads((trash.folder / entry.id / "entry.json").read_text())
    data["files"] = ["optimizer.pt", "sub/optimizer.pt"]  # a forged bundle whose item links out of ROOT
    (trash.folder / entry.id / "entry.json").write_text(json.dumps(data))
    os.symlink(outside, item / "sub")
    os.unlink(ckpt / "sub")
    with pytest.raises(TrashError, match="symlink"):
        trash.restore(entry.id)
    assert (outside / "optimizer.pt").read_bytes() == b"theirs" and not (ckpt / "sub").exists()


def test_a_slim_killed_half_way_is_undone_whole(tmp_path):
    import signal
    import subprocess
    import sys

    ckpt = make_checkpoint(tmp_path / "c")
    before = tree_hashes(ckpt)
    code = (
        "import os, signal, sys; from tui.core import trash as t\n"
        "real, calls = os.replace, []\n"
        "def replace(a, b, **k):\n"
        "    calls.append(a)  # entry.json, then the files one by one\n"
        "    if len(calls) == 3: os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(a, b, **k)\n"
        "t.os.replace = replace\n"
        "t.Trash(sys.argv[1]).move_files(sys.argv[2], ['optimizer.pt', 'rng_state.pth', 'scheduler.pt'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(os.getcwd())}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(ckpt)], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    [entry] = Trash(tmp_path).list()
    assert not (ckpt / "optimizer.pt").exists() and (ckpt / "scheduler.pt").exists()  # one moved of three
    Trash(tmp_path).restore(entry.id)
    assert tree_hashes(ckpt) == before and Trash(tmp_path).list() == []


def test_a_folder_swapped_for_a_symlink_after_the_checks_fails_the_rename(tmp_path, monkeypatch):
    root, outside = tmp_path / "root", tmp_path / "outside"
    make_checkpoint(root / "run" / "checkpoint-1")
    theirs = make_checkpoint(outside / "checkpoint-1")
    before = tree_hashes(outside)
    real_size = trash_mod.tree_size

    def swap_then_size(path):  # runs between the checks and the rename
        if (root / "run").is_dir() and not (root / "run").is_symlink():
            os.rename(root / "run", root / "run.away")
            os.symlink(outside, root / "run")
        return real_size(path)

    monkeypatch.setattr(trash_mod, "tree_size", swap_then_size)
    trash = Trash(root)
    for move in (lambda: trash.move(root / "run" / "checkpoint-1"),
                 lambda: trash.move_files(root / "run" / "checkpoint-1", ["optimizer.pt"])):
        with pytest.raises(TrashError, match="symlink"):
            move()
        os.unlink(root / "run")
        os.rename(root / "run.away", root / "run")
    assert tree_hashes(outside) == before and theirs.is_dir() and trash.list() == []


def test_a_parent_swapped_for_a_symlink_during_restore_fails_the_rename(tmp_path, monkeypatch):
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    trash = Trash(root)
    whole = trash.move(make_checkpoint(root / "run" / "checkpoint-1"))
    bundle = trash.move_files(make_checkpoint(root / "run" / "checkpoint-2"), ["optimizer.pt"])
    real_target, calls, swap_at = Trash._restore_target, [], [0]

    def checked_then_swapped(self, rel, entry_id):
        found = real_target(self, rel, entry_id)
        calls.append(rel)
        if len(calls) == swap_at[0]:  # the last check before the rename
            os.rename(root / "run", root / "run.away")
            os.symlink(outside, root / "run")
        return found

    monkeypatch.setattr(Trash, "_restore_target", checked_then_swapped)
    for entry, checks in ((whole, 1), (bundle, 2)):
        calls.clear()
        swap_at[0] = checks
        with pytest.raises(TrashError, match="symlink"):
            trash.restore(entry.id)
        os.unlink(root / "run")
        os.rename(root / "run.away", root / "run")
    assert os.listdir(outside) == [] and len(trash.list()) == 2
