import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.ops import age_tree, make_checkpoint, tree_hashes, write_file
from tui.cli import main

REPO = Path(__file__).resolve().parents[2]


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def root(tmp_path, monkeypatch):
    r = tmp_path / "root"
    for step in (10, 20, 30):
        make_checkpoint(r / "out" / f"checkpoint-{step}")
    write_file(tmp_path / "outside" / "precious.bin", b"precious")
    age_tree(r)
    monkeypatch.chdir(r)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a TTY
    return r


def without_root_line(err: str) -> str:
    """stderr less the line saying which ROOT was derived (tested in test_root_cli.py)."""
    return "".join(line for line in err.splitlines(keepends=True) if not line.startswith("ckpt-tui: ROOT "))


def run_json(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_rm_without_yes_and_without_tty_refuses(root, capsys):
    code = main(["rm", "out/checkpoint-10"])
    out, err = capsys.readouterr()
    err = without_root_line(err)
    assert code == 1
    assert err.strip().count("\n") == 0 and "not a terminal" in err and "--yes" in err
    assert (root / "out" / "checkpoint-10").exists()


def test_rm_refuses_in_a_real_process_without_tty(root):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tui.cli import main; sys.exit(main())",
            "rm",
            "out/checkpoint-10",
        ],
        cwd=root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    err = without_root_line(proc.stderr)
    assert "not a terminal" in err and len(err.strip().splitlines()) == 1
    assert (root / "out" / "checkpoint-10").exists()


def test_rm_yes_then_trash_restore_is_byte_identical(root, capsys):
    before = tree_hashes(root / "out")
    code, data, _ = run_json(capsys, ["rm", "out/checkpoint-10", "out/checkpoint-20", "--yes", "--json"])
    assert code == 0 and data["executed"] and data["result"]["ok"]
    assert not (root / "out" / "checkpoint-10").exists()
    code, listing, _ = run_json(capsys, ["trash", "list", "--json"])
    assert code == 0 and sorted(e["original_path"] for e in listing["entries"]) == [
        "out/checkpoint-10",
        "out/checkpoint-20",
    ]
    assert {e["origin"] for e in listing["entries"]} == {"cli"}  # the app's trash screen tells them apart
    main(["trash", "list"])
    text = capsys.readouterr().out
    assert "delete cli  out/checkpoint-10" in text
    for entry in listing["entries"]:
        assert main(["trash", "restore", entry["id"]]) == 0
    assert tree_hashes(root / "out") == before


def test_rm_asks_on_a_tty(root, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", FakeTTY("n\n"))
    assert main(["rm", "out/checkpoint-10"]) == 1
    assert (root / "out" / "checkpoint-10").exists()
    monkeypatch.setattr(sys, "stdin", FakeTTY("y\n"))
    assert main(["rm", "out/checkpoint-10"]) == 0
    out, err = capsys.readouterr()
    assert "Proceed? [y/N]" in err and "Delete 1 item" in out
    assert not (root / "out" / "checkpoint-10").exists()


def test_rm_dry_run_changes_nothing(root, capsys):
    before = tree_hashes(root)
    code, data, _ = run_json(capsys, ["rm", "out/checkpoint-10", "--dry-run", "--json"])
    assert code == 0 and data["executed"] is False and data["plan"]["items"][0]["path"] == "out/checkpoint-10"
    assert tree_hashes(root) == before


def test_rm_outside_root_symlink_and_dotdot_are_refused(root, tmp_path, capsys):
    os.symlink(tmp_path / "outside", root / "escape")
    code, data, _ = run_json(
        capsys,
        ["rm", "--root", ".", "escape", "../outside/precious.bin", str(tmp_path / "outside"), "--yes", "--json"],
    )
    assert code == 1 and data["plan"]["items"] == []
    reasons = " | ".join(r["reason"] for r in data["plan"]["refusals"])
    assert "symlink pointing outside" in reasons and "outside ROOT" in reasons
    assert (tmp_path / "outside" / "precious.bin").read_bytes() == b"precious"
    assert (root / "escape").is_symlink()
    assert not (root / ".ckpt-trash").exists() or list((root / ".ckpt-trash").iterdir()) == []


def test_rm_finds_the_existing_trash_from_a_subfolder(root, capsys, monkeypatch):
    (root / ".ckpt-trash").mkdir()
    monkeypatch.chdir(root / "out")
    assert main(["rm", "checkpoint-30", "--yes"]) == 0
    assert [e.name for e in (root / ".ckpt-trash").iterdir()]
    assert not (root / "out" / ".ckpt-trash").exists()


def test_prune_dry_run_equals_real_prune(tmp_path, capsys, monkeypatch):
    from tests.fixtures import synthetic

    root = tmp_path / "hf"
    evals = {10: 0.5, 20: 0.9, 30: 0.6, 40: 0.7}
    for step in evals:
        so_far = {s: v for s, v in evals.items() if s <= step}
        best_step = max(so_far, key=so_far.get)
        synthetic.write_hf_checkpoint(
            root / "out" / f"checkpoint-{step}",
            step,
            evals=so_far,
            best_metric=so_far[best_step],
            best_model_checkpoint=f"out/checkpoint-{best_step}",
        )
    age_tree(root)
    monkeypatch.chdir(root)
    argv = ["prune", str(root), "--keep", "1", "--metric", "f1_macro", "--json"]
    code, dry, _ = run_json(capsys, [*argv, "--dry-run"])
    assert code == 0, dry
    planned = sorted(i["path"] for i in dry["plan"]["items"])
    assert planned and "out/checkpoint-20" not in planned and "out/checkpoint-40" not in planned
    before = {p.name for p in (root / "out").iterdir()}
    code, real, _ = run_json(capsys, [*argv, "--yes"])
    assert code == 0 and real["executed"]
    assert sorted(i["path"] for i in real["result"]["done"]) == planned
    gone = sorted(f"out/{name}" for name in before - {p.name for p in (root / "out").iterdir()})
    assert gone == planned


def test_slim_json(root, capsys):
    code, data, _ = run_json(capsys, ["slim", "out/checkpoint-10", "--yes", "--json"])
    assert code == 0 and data["result"]["bytes"] == 580
    assert sorted(p.name for p in (root / "out" / "checkpoint-10").iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]


def test_trash_empty_needs_yes_without_tty(root, capsys):
    assert main(["rm", "out/checkpoint-10", "--yes"]) == 0
    assert main(["trash", "empty"]) == 1
    assert main(["trash", "empty", "--yes"]) == 0
    assert list((root / ".ckpt-trash").iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["prune", "nope", "--keep", "1", "--metric", "f1"],
        ["prune", ".", "--keep", "-1", "--metric", "f1"],
        ["prune", ".", "--metric", "f1"],
        ["trash", "restore"],
        ["trash", "frobnicate"],
        ["promote", "does-not-exist"],
        ["rm", "x", "--root", "no-such-root"],
    ],
)
def test_usage_errors_exit_2(root, capsys, argv):
    assert main(argv) == 2
    err = without_root_line(capsys.readouterr().err)
    assert len(err.strip().splitlines()) == 1


def test_trash_restore_unknown_id_is_refused(root, capsys):
    assert main(["trash", "restore", "20990101T000000Z-00001"]) == 1
    assert "no such trash entry" in capsys.readouterr().err


def test_promote_copy_without_torch_path(root, capsys):
    code, data, _ = run_json(capsys, ["promote", "out/checkpoint-20", "--json"])
    assert code == 0, data
    target = Path(data["target"])
    assert target == root / "out" / "promoted" / "checkpoint-20"
    assert data["manifest"]["kind"] == "promoted" and data["manifest"]["source"] == "out/checkpoint-20"
    assert main(["promote", "out/checkpoint-20"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["promote", "out/checkpoint-20", "--overwrite"]) == 0


def test_promote_base_is_only_for_a_lora_adapter(root, capsys):
    assert main(["promote", "out/checkpoint-20", "--base", "out"]) == 1
    assert "a base model only applies to a LoRA adapter" in capsys.readouterr().err
    assert not (root / "out" / "promoted" / "checkpoint-20").exists()


def test_rm_inside_a_run_sees_the_run_lock_and_best(tmp_path, capsys, monkeypatch):
    import socket

    run = tmp_path / "outputs" / "exp1"
    write_file(run / "run.json", json.dumps({"format": "ckpt-tui/run/1"}))
    make_checkpoint(run / "checkpoints" / "fold_0" / "step_5")
    age_tree(tmp_path / "outputs")
    monkeypatch.chdir(run / "checkpoints" / "fold_0")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    write_file(run / ".lock", json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    code, data, _ = run_json(capsys, ["rm", "step_5", "--yes", "--json"])
    assert code == 1 and "held by pid" in data["plan"]["refusals"][0]["reason"]
    assert data["plan"]["root"] == str((tmp_path / "outputs").resolve())
    (run / ".lock").unlink()
    assert main(["rm", "step_5", "--yes"]) == 0
    assert (tmp_path / "outputs" / ".ckpt-trash").is_dir()


def test_the_confirmation_shows_a_name_with_a_newline_on_one_line(root, capsys, monkeypatch):
    tricky = root / "out" / "checkpoint-10\n      1.0 KiB  checkpoint-20  (nothing else)"
    os.rename(root / "out" / "checkpoint-10", tricky)
    age_tree(root)
    monkeypatch.setattr(sys, "stdin", FakeTTY("n\n"))
    assert main(["rm", str(tricky)]) == 1
    out = capsys.readouterr().out
    item_lines = [line for line in out.splitlines() if line.startswith("  ") and "KiB" in line]
    assert len(item_lines) == 1 and "checkpoint-10\\x0a" in item_lines[0]
    assert tricky.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["rm", "--root", "x\x1b]0;PWNED\x07", "out/checkpoint-10"],
        ["prune", "gone\x1b[2J\u202e", "--keep", "1", "--metric", "loss"],
        ["promote", "gone\x1b[31m\nfake line"],
        ["trash", "list", "--root", "t\x1b]0;t\x07"],
        ["gone\x1b]0;PWNED\x07"],  # `ckpt-tui ROOT` (the app) with a ROOT that does not exist
    ],
)
def test_usage_errors_never_echo_control_characters(root, capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("ckpt-tui: ")
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in err
    assert "\\x1b" in err


def test_a_symlinked_trash_is_refused_by_rm_and_trash_in_one_line(root, tmp_path, capsys):
    victim = write_file(tmp_path / "victim" / "folder" / "keep.bin", b"keep")
    os.symlink(tmp_path / "victim", root / ".ckpt-trash")
    before = tree_hashes(tmp_path / "victim")
    for argv in (
        ["rm", "--yes", "out/checkpoint-10"],
        ["trash", "empty", "--yes"],
        ["trash", "list"],
        ["trash", "restore", "folder"],
    ):
        assert main(argv) == 1, argv
        out, err = capsys.readouterr()
        assert "symlink" in out + err and "Traceback" not in out + err
        assert all(len(text.strip().splitlines()) <= 2 for text in (out, err))
    assert tree_hashes(tmp_path / "victim") == before and victim.exists()
    assert (root / "out" / "checkpoint-10").is_dir()
