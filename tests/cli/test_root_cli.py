"""Which ROOT rm / slim / promote / trash use without --root (from the PATH, never the current directory,
said on stderr), and dry runs that read as a plan."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from tests.fixtures.ops import age_tree, make_checkpoint, tree_hashes, write_file
from tui.cli import main
from tui.cli.ops_cmds import derive_root


@pytest.fixture(autouse=True)
def no_tty(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_rm_from_the_parent_puts_the_trash_where_the_app_looks(tmp_path, capsys, monkeypatch):
    fixtures = tmp_path / "fixtures"
    make_checkpoint(fixtures / "x")
    age_tree(fixtures)
    monkeypatch.chdir(tmp_path)  # the parent: the old default put the trash here
    code, _, err = run(capsys, "rm", "fixtures/x", "--yes")
    assert code == 0 and (fixtures / ".ckpt-trash").is_dir() and not (tmp_path / ".ckpt-trash").exists()
    assert f"ckpt-tui: ROOT {fixtures} (the folder holding x" in err


def test_the_output_folder_of_checkpoint_n_is_the_run(tmp_path):
    ck = make_checkpoint(tmp_path / "root" / "out" / "checkpoint-10")
    root, why = derive_root([ck])
    assert root == tmp_path / "root" and "out" in why


def test_a_run_json_above_wins_over_the_folder(tmp_path):
    run = tmp_path / "outputs" / "exp1"
    write_file(run / "run.json", "{}")
    ck = make_checkpoint(run / "checkpoints" / "fold_0" / "step_5")
    assert derive_root([ck]) == (tmp_path / "outputs", "the folder holding the run exp1")


def test_an_existing_trash_above_wins(tmp_path):
    (tmp_path / ".ckpt-trash").mkdir()
    run = tmp_path / "a" / "b"
    write_file(run / "run.json", "{}")
    ck = make_checkpoint(run / "checkpoint-3")
    assert derive_root([ck])[0] == tmp_path


def test_several_paths_share_the_folder_holding_them_all(tmp_path):
    a = make_checkpoint(tmp_path / "root" / "g1" / "out" / "checkpoint-1")
    b = make_checkpoint(tmp_path / "root" / "model")
    assert derive_root([a, b])[0] == tmp_path / "root"
    assert derive_root([a, a.parent / "checkpoint-1"])[0] == tmp_path / "root" / "g1"


def test_the_cwd_plays_no_part(tmp_path, capsys, monkeypatch):
    root = tmp_path / "root"
    make_checkpoint(root / "out" / "checkpoint-10")
    age_tree(root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = run(capsys, "rm", str(root / "out" / "checkpoint-10"), "--dry-run", "--json")
    assert code == 0 and json.loads(out)["plan"]["root"] == str(root) and f"ROOT {root} " in err


def test_promote_says_its_root_and_works_from_anywhere(tmp_path, capsys, monkeypatch):
    root = tmp_path / "root"
    make_checkpoint(root / "out" / "checkpoint-20")
    age_tree(root)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "promote", str(root / "out" / "checkpoint-20"), "--json")
    assert code == 0 and Path(json.loads(out)["target"]) == root / "out" / "promoted" / "checkpoint-20"
    assert f"ROOT {root} " in err


def test_the_app_hint_for_a_torch_conversion_is_a_command_that_works_anywhere(tmp_path):
    from tui.core.promote import PromoteError, promote

    root = tmp_path / "root"
    ck = make_checkpoint(root / "out" / "checkpoint-30")
    (ck / "model.safetensors").unlink()
    write_file(ck / "pytorch_model.bin", b"\x80\x02}q\x00.")  # a .bin: the conversion needs torch
    age_tree(root)
    with pytest.raises(PromoteError) as caught:
        promote(root, ck)  # what the app does: no converter
    message = str(caught.value)
    if "ckpt-tui promote" not in message:
        pytest.skip(f"not refused for a conversion: {message}")
    assert f"--root {root}" in message and f" {ck}`" in message


def test_dry_runs_read_as_a_plan_and_change_nothing(tmp_path, capsys):
    root = tmp_path / "root"
    for step in (10, 20, 30):
        make_checkpoint(root / "out" / f"checkpoint-{step}")
    age_tree(root)
    before = tree_hashes(root)
    code, out, _ = run(capsys, "rm", str(root / "out" / "checkpoint-10"), "--dry-run")
    last = out.strip().splitlines()
    assert code == 0 and last[-2].startswith("Would move 1 item (") and "to the trash in root/.ckpt-trash/" in last[-2]
    assert last[-1] == "Dry run: nothing was changed."
    code, out, _ = run(capsys, "slim", str(root / "out" / "checkpoint-10"), "--dry-run")
    assert code == 0 and "Would move " in out and "training-state file" in out and "Dry run" in out
    assert main(["rm", str(root / "out" / "checkpoint-20"), "--yes"]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "trash", "empty", "--root", str(root), "--dry-run")
    assert code == 0 and "Would permanently delete 1 trash entry" in out
    assert not any(word in out for word in ("Deleted", "Moved", "emptied"))
    assert tree_hashes(root / "out" / "checkpoint-10") == {
        k.split("/", 2)[2]: v for k, v in before.items() if k.startswith("out/checkpoint-10/")
    }
    assert len(list((root / ".ckpt-trash").iterdir())) == 1  # the dry empty left the entry


def test_a_prune_dry_run_reads_as_a_plan(tmp_path, capsys):
    from tests.fixtures import synthetic

    root = tmp_path / "hf"
    evals = {10: 0.5, 20: 0.9, 30: 0.6, 40: 0.7}
    for step in evals:
        so_far = {s: v for s, v in evals.items() if s <= step}
        best = max(so_far, key=so_far.get)
        synthetic.write_hf_checkpoint(root / "out" / f"checkpoint-{step}", step, evals=so_far,
                                      best_metric=so_far[best], best_model_checkpoint=f"out/checkpoint-{best}")  # fmt: skip
    age_tree(root)
    code, out, _ = run(capsys, "prune", str(root), "--keep", "1", "--metric", "f1_macro", "--dry-run")
    lines = out.strip().splitlines()
    assert code == 0 and lines[-3].startswith("Would move ") and "out/checkpoint-30" in lines[-3]
    assert lines[-2].startswith("Would keep ") and lines[-1] == "Dry run: nothing was changed."
    assert (root / "out" / "checkpoint-30").is_dir()
