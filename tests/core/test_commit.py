"""The commit protocol (docs/FORMAT.md): a kill at any point leaves the old or the new folder, never a mix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tui.core import commit as c


def _write(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def _read_all(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_commit_writes_manifest_last_with_sizes_and_hashes(tmp_path):
    target = tmp_path / "model_fold_0"
    tmp = c.begin(target)
    _write(tmp, {"model.safetensors": b"x" * 100, "sub/config.json": b"{}"})
    manifest = c.commit(tmp, target, kind="fold-model", fields={"step": 7, "fold": 0})

    assert not tmp.exists()
    on_disk = json.loads((target / c.MANIFEST_NAME).read_text())
    assert on_disk == manifest
    assert on_disk["format"] == c.MANIFEST_FORMAT and on_disk["step"] == 7
    assert on_disk["files"]["model.safetensors"]["size"] == 100
    assert on_disk["files"]["sub/config.json"]["sha256"] == c.sha256_file(target / "sub/config.json")
    assert c.verify(target, check_hashes=True) == []


def test_known_hashes_are_trusted_and_not_recomputed(tmp_path, monkeypatch):
    target = tmp_path / "t"
    tmp = c.begin(target)
    digest = c.write_bytes_hashed(tmp / "w.bin", b"abc")
    monkeypatch.setattr(c, "sha256_file", lambda p: pytest.fail(f"re-hashed {p}"))
    manifest = c.commit(tmp, target, kind="fold-model", hashes={"w.bin": digest})
    assert manifest["files"]["w.bin"]["sha256"] == digest


def test_replacing_a_committed_folder(tmp_path):
    target = tmp_path / "best"
    with c.atomic_dir(target, kind="fold-model") as tmp:
        _write(tmp, {"a": b"old"})
    with c.atomic_dir(target, kind="fold-model") as tmp:
        _write(tmp, {"b": b"new"})
    assert _read_all(target).keys() == {"b", c.MANIFEST_NAME}
    assert not c.old_path_for(target).exists() and not c.tmp_path_for(target).exists()


def test_error_inside_atomic_dir_leaves_previous_folder_untouched(tmp_path):
    target = tmp_path / "best"
    with c.atomic_dir(target, kind="fold-model") as tmp:
        _write(tmp, {"a": b"old"})
    before = _read_all(target)
    with pytest.raises(RuntimeError), c.atomic_dir(target, kind="fold-model") as tmp:
        _write(tmp, {"a": b"half"})
        raise RuntimeError("disk full")
    assert _read_all(target) == before
    assert not c.tmp_path_for(target).exists()


@pytest.mark.parametrize("die_at_replace_call", [0, 1])
def test_kill_during_rename_never_yields_a_complete_mix(tmp_path, monkeypatch, die_at_replace_call):
    """Simulate a kill at each os.replace of a replacing commit; whatever is left verifies or says why not."""
    target = tmp_path / "best"
    with c.atomic_dir(target, kind="fold-model") as tmp:
        _write(tmp, {"w": b"old"})
    tmp = c.begin(target)
    _write(tmp, {"w": b"new!"})

    real_replace, calls = os.replace, []

    def dying_replace(src, dst):
        if len(calls) == die_at_replace_call:
            raise KeyboardInterrupt("killed")
        calls.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(c.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        c.commit(tmp, target, kind="fold-model")
    monkeypatch.setattr(c.os, "replace", real_replace)

    if target.exists():
        # Killed before anything moved: the old folder is still complete and still the old content.
        assert c.verify(target) == [] and (target / "w").read_bytes() == b"old"
    else:
        # Killed between the two renames: no target, the old one parked aside, both visible as temp names.
        assert c.is_temp_name(c.old_path_for(target).name) and c.old_path_for(target).exists()
    assert c.tmp_path_for(target).exists()

    # The next writer of the same target first restores the parked committed folder.
    c.begin(target)
    assert c.verify(target) == [] and (target / "w").read_bytes() == b"old"


def test_folder_without_manifest_is_not_complete(tmp_path):
    folder = tmp_path / "step_10"
    _write(folder, {"model.safetensors": b"1234"})
    (problem,) = c.verify(folder)
    assert "never committed" in problem


def test_verify_detects_truncation_missing_files_and_hash_drift(tmp_path):
    target = tmp_path / "ck"
    with c.atomic_dir(target, kind="step-checkpoint") as tmp:
        _write(tmp, {"a.bin": b"0123456789", "b.bin": b"zz", "c.bin": b"cc"})
    (target / "a.bin").write_bytes(b"0123")
    (target / "b.bin").unlink()
    (target / "c.bin").write_bytes(b"CC")
    problems = c.verify(target)
    assert any("a.bin: 4 bytes on disk, 10" in p for p in problems)
    assert any("b.bin: listed" in p and "missing" in p for p in problems)
    assert not any("c.bin" in p for p in problems)  # same size: only a hash check can tell
    assert any("c.bin: sha256 differs" in p for p in c.verify(target, check_hashes=True))


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"{not json", "not valid JSON"),
        (b'{"format": "other"}', "not a ckpt-tui/manifest/1 manifest"),
        (json.dumps({"format": c.MANIFEST_FORMAT, "files": {"a": {"size": "1"}}}).encode(), "'files' must map"),
        (b"\xff\xfe\x00", "not valid JSON"),
    ],
)
def test_bad_manifests_are_one_line_problems(tmp_path, content, fragment):
    (tmp_path / c.MANIFEST_NAME).write_bytes(content)
    (problem,) = c.verify(tmp_path)
    assert fragment in problem and "\n" not in problem


def test_manifest_paths_cannot_escape_the_folder(tmp_path):
    folder = tmp_path / "ck"
    folder.mkdir()
    (tmp_path / "secret").write_bytes(b"s")
    manifest = {"format": c.MANIFEST_FORMAT, "files": {"../secret": {"size": 1, "sha256": "0"}}}
    (folder / c.MANIFEST_NAME).write_text(json.dumps(manifest))
    assert any("unsafe path" in p for p in c.verify(folder, check_hashes=True))


def test_temp_names_round_trip():
    assert c.tmp_path_for(Path("/r/step_5")).name == ".step_5.tmp"
    assert c.is_temp_name(".step_5.tmp") and c.is_temp_name(".step_5.old")
    assert not c.is_temp_name("step_5") and not c.is_temp_name(".hidden")
    assert c.target_name_of_temp(".m_fold_0.old") == "m_fold_0"
    assert c.target_name_of_temp("m_fold_0") is None


def test_unique_temp_folders_are_created_fresh_and_name_their_target(tmp_path):
    target = tmp_path / "d" / "export"
    made = {c.unique_temp_for(target) for _ in range(20)} | {c.unique_temp_for(target, c.OLD_MARK)}
    assert len(made) == 21 and all(p.is_dir() and not any(p.iterdir()) for p in made)
    assert {c.target_name_of_temp(p.name) for p in made} == {"export"}
