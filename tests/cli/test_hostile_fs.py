"""A corpus of hostile trees for the commands that change the disk (docs/SECURITY.md, "Filesystem").

Each case builds ROOT plus a folder outside it that someone else owns, runs every destructive command
against it (rm, slim, prune, trash list / empty / restore, promote), and checks the class of guarantee:
nothing outside ROOT changes, what must stay protected stays, no traceback, exit codes 0/1/2 only.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest

from tests.fixtures import synthetic
from tests.fixtures.ops import age_tree, make_checkpoint, tree_hashes, write_file
from tui.cli import main

ENTRY = "20260101T000000Z-00001"


def _entry(trash: Path, entry_id: str, data: dict | str | None, item: bool = True) -> Path:
    folder = trash / entry_id
    folder.mkdir(parents=True)
    if item:
        write_file(folder / "item" / "keep.bin", b"keep")
    if data is not None:
        write_file(folder / "entry.json", data if isinstance(data, str) else json.dumps({"id": entry_id, **data}))
    return folder


def symlinked_trash(root, outside):
    write_file(outside / "f" / "entry.json", json.dumps({"id": "f", "original_path": "x"}))
    os.symlink(outside, root / ".ckpt-trash")


def trash_is_a_file(root, outside):
    write_file(root / ".ckpt-trash", b"x")


def symlinked_entry_folder(root, outside):
    (root / ".ckpt-trash").mkdir()
    write_file(outside / ENTRY / "entry.json", json.dumps({"id": ENTRY, "original_path": "run/x"}))
    os.symlink(outside / ENTRY, root / ".ckpt-trash" / ENTRY)


def entry_json_is_a_link_or_fifo(root, outside):
    folder = _entry(root / ".ckpt-trash", ENTRY, None)
    write_file(outside / "entry.json", json.dumps({"id": ENTRY, "original_path": "run/x"}))
    os.symlink(outside / "entry.json", folder / "entry.json")
    os.mkfifo(_entry(root / ".ckpt-trash", "20260101T000000Z-00002", None) / "entry.json")


def forged_entries(root, outside):
    trash = root / ".ckpt-trash"
    for n, data in enumerate(
        [
            {"original_path": str(outside / "planted")},
            {"original_path": "../../outside/planted"},
            {"original_path": "run", "files": ["../../outside/planted"]},
            {"original_path": "run", "files": "model.safetensors"},
            {"original_path": ["run"]},
            {"original_path": "run/checkpoint-2", "size_bytes": 1e308},
            "{not json",
            "[]",
        ],
        start=1,
    ):
        _entry(trash, f"20260101T000000Z-{n:05d}", data)
    _entry(trash, "not-an-entry", {"original_path": "run/new"})


def item_links_outside(root, outside):
    folder = _entry(root / ".ckpt-trash", ENTRY, {"original_path": "run/alias"}, item=False)
    os.symlink(outside, folder / "item")  # restoring moves the link; emptying removes the link only


def bundle_item_links_outside(root, outside):
    write_file(outside / "optimizer.pt", b"theirs")
    folder = _entry(root / ".ckpt-trash", ENTRY, {"original_path": "run/checkpoint-2", "files": ["sub/optimizer.pt"]})
    os.symlink(outside, folder / "item" / "sub")


def run_folder_is_a_link_outside(root, outside):
    make_checkpoint(outside / "checkpoint-9")
    os.symlink(outside, root / "linked")


def checkpoint_is_a_link_outside(root, outside):
    make_checkpoint(outside / "checkpoint-9")
    os.symlink(outside / "checkpoint-9", root / "run" / "checkpoint-9")


def copied_run_with_stale_best(root, outside):
    """outside/ is where the run was trained (still there); ROOT's copy names outside's checkpoint-4 best."""
    for folder in (outside, root / "run"):
        for n in (2, 4, 6):
            if not (folder / f"checkpoint-{n}").exists():
                make_checkpoint(folder / f"checkpoint-{n}", optimizer=False)
            synthetic.write_trainer_state(
                folder / f"checkpoint-{n}",
                global_step=n,
                best_metric=0.9,
                best_model_checkpoint=str(outside / "checkpoint-4"),
                evals={2: 0.5, 4: 0.9, 6: 0.7},
            )


def best_outside_root(root, outside):
    make_checkpoint(outside / "checkpoint-2")  # the same name as a checkpoint inside ROOT
    synthetic.write_trainer_state(
        root / "run" / "checkpoint-6", global_step=6, best_metric=0.9,
        best_model_checkpoint=str(outside / "elsewhere" / "checkpoint-9"), evals={6: 0.9},
    )


def promote_temp_names_taken(root, outside):
    write_file(root / "exports" / ".export.tmp" / "theirs.bin", b"theirs")  # another writer's, in ROOT
    os.symlink(outside, root / "exports" / ".export.old")


def promote_source_links_outside(root, outside):
    ck = root / "run" / "checkpoint-6"
    os.symlink(outside / "precious.bin", ck / "generation_config.json")  # someone's private file
    (ck / "tokenizer.json").unlink()
    os.mkfifo(ck / "tokenizer.json")  # reading it would hang


CASES = [
    symlinked_trash,
    trash_is_a_file,
    symlinked_entry_folder,
    entry_json_is_a_link_or_fifo,
    forged_entries,
    item_links_outside,
    bundle_item_links_outside,
    run_folder_is_a_link_outside,
    checkpoint_is_a_link_outside,
    copied_run_with_stale_best,
    best_outside_root,
    promote_temp_names_taken,
    promote_source_links_outside,
]


def _commands(root: Path, outside: Path) -> list[list[str]]:
    ids = sorted(p.name for p in (root / ".ckpt-trash").iterdir()) if (root / ".ckpt-trash").is_dir() else []
    return [
        ["trash", "list", "--json"],
        ["promote", "run/checkpoint-6", "--to", str(root / "run" / "checkpoint-6" / "export")],
        *[["promote", "run/checkpoint-6", "--to", str(root / "exports" / "export"), "--overwrite"]] * 2,
        *[["trash", "restore", i] for i in ids],
        ["rm", "--yes", "--root", str(root), "run/checkpoint-2", "linked/checkpoint-9", "run/checkpoint-9", str(outside)],
        ["slim", "--yes", "--root", str(root), "run/checkpoint-6"],
        ["prune", str(root), "--keep", "0", "--metric", "f1_macro", "--yes"],
        ["trash", "empty", "--yes"],
        ["trash", "list"],
    ]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_hostile_tree(case, tmp_path, monkeypatch, capsys):
    root, outside = tmp_path / "root", tmp_path / "outside"
    for n in (2, 6):
        make_checkpoint(root / "run" / f"checkpoint-{n}")
    synthetic.write_config(root / "run" / "checkpoint-6")
    synthetic.write_safetensors(root / "run" / "checkpoint-6" / "model.safetensors", synthetic.tiny_bert_tensors())
    write_file(outside / "precious.bin", b"precious")
    case(root, outside)
    age_tree(tmp_path)
    before = tree_hashes(outside)
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    promoted = 0
    for argv in _commands(root, outside):
        code = main(argv)  # an exception here is a traceback for the user: the test fails
        out, err = capsys.readouterr()
        promoted += argv[0] == "promote" and code == 0
        assert code in (0, 1, 2), (argv, code, err)
        assert "Traceback" not in out + err
        assert tree_hashes(outside) == before, (argv, out, err)
    assert tree_hashes(outside) == before  # nothing outside ROOT changed
    assert not (outside / "planted").exists() and not (tmp_path / "planted").exists()
    if case is promote_source_links_outside:  # refused: nothing of theirs is copied into an export
        assert promoted == 0 and not (root / "exports").exists()
    else:
        assert promoted == 2  # the export is written (and replaced) beside names it must not touch
    if case is promote_temp_names_taken:
        assert (root / "exports" / ".export.tmp" / "theirs.bin").read_bytes() == b"theirs"
    if case is copied_run_with_stale_best:
        assert (root / "run" / "checkpoint-4").is_dir()  # the copy's best survives rm and prune
