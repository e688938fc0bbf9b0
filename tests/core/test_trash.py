import json
import os

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
    with pytest.raises(TrashError, match="not inside"):
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
