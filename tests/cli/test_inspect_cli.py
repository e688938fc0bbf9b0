"""`ckpt-tui ls|inspect|metrics`: exit codes, one-line errors, JSON keys exactly per docs/FORMAT.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import synthetic as s
from tui.cli import main

INFO_KEYS = {
    "path",
    "pickle_scan",
    "kind",
    "complete",
    "problems",
    "size_bytes",
    "tensors",
    "parameters",
    "dtypes",
    "step",
    "epoch",
    "fold",
    "best",
    "run",
    "in_progress",
    "promoted",
    "metric",
    "mtime",
    "epoch_step",
    "unsupported",
    "allocated_bytes",
}
INSPECT_KEYS = INFO_KEYS | {"config", "config_file", "tokenizer", "weights", "trainer_state", "files", "manifest", "resume"}
REPO = Path(__file__).resolve().parents[2]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tree(tmp_path):
    s.make_tree(tmp_path, 10)
    s.write_run(tmp_path, "run1", lora=True)
    return tmp_path


def test_ls_json_keys_and_nulls(tree, capsys):
    code, out, err = run_cli(capsys, "ls", str(tree), "--json")
    assert code == 0 and err == ""
    rows = json.loads(out)
    assert len(rows) > 10 and all(set(r) == INFO_KEYS for r in rows)
    ds = next(r for r in rows if r["kind"] == "deepspeed")
    assert ds["tensors"] is None and ds["parameters"] is None and ds["dtypes"] is None and ds["epoch"] is None
    assert all(not Path(r["path"]).is_absolute() for r in rows)


def test_inspect_json_keys(tree, capsys):
    code, out, _ = run_cli(capsys, "inspect", str(tree / "run1" / "tiny-bert_fold_1"), "--json")
    data = json.loads(out)
    assert code == 0 and set(data) == INSPECT_KEYS
    assert (
        data["path"] == "run1/tiny-bert_fold_1"
        and data["fold"] == 1
        and data["manifest"]["kind"] == "fold-model"
    )


def test_metrics_json(tree, capsys):
    code, out, _ = run_cli(capsys, "metrics", str(tree / "run1"), "--json")
    data = json.loads(out)
    assert code == 0 and set(data) == {"folds", "oof", "mean", "std", "columns", "problems"}
    assert set(data["folds"]["0"]) == {"n", "accuracy", "f1_macro", "log_loss"}


def test_problems_are_data_not_failure(tmp_path, capsys):
    s.broken_truncated(tmp_path / "m")
    code, out, _ = run_cli(capsys, "ls", str(tmp_path), "--json")
    assert code == 0 and json.loads(out)[0]["complete"] is False


@pytest.mark.parametrize(
    "argv",
    [
        ["ls", "{missing}"],
        ["ls", "{missing}", "--json"],
        ["inspect", "{missing}"],
        ["metrics", "{missing}"],
        ["ls"],
        ["ls", "{root}", "--bogus"],
        ["inspect", "{notckpt}"],
        ["metrics", "{root}"],
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, capsys, argv):
    (tmp_path / "plain").mkdir()
    subst = {
        "{missing}": str(tmp_path / "nope"),
        "{root}": str(tmp_path),
        "{notckpt}": str(tmp_path / "plain"),
    }
    code, out, err = run_cli(capsys, *[subst.get(a, a) for a in argv])
    assert code == 2 and out == ""
    assert err.startswith("ckpt-tui: ") and err.count("\n") == 1


def test_malformed_csv_alone_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "valid_df_fold_0.csv").write_text('label,prediction\n"a,b\n')
    code, out, err = run_cli(capsys, "metrics", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "valid_df_fold_0.csv" in err


def test_rich_tables(tree, capsys):
    for argv in (
        ["ls", str(tree)],
        ["inspect", str(tree / "run1" / "tiny-bert_fold_0")],
        ["metrics", str(tree / "run1")],
    ):
        code, out, _ = run_cli(capsys, *argv)
        assert code == 0 and out.strip()
    code, out, _ = run_cli(capsys, "ls", str(tree))
    assert "hf-checkpoint" in out and "deepspeed" in out


def test_non_utf8_name_prints_valid_json_subprocess(tmp_path):
    raw = os.fsencode(str(tmp_path)) + b"/bad-\xff"
    os.mkdir(raw)
    s.write_hf_model(Path(os.fsdecode(raw)), tokenizer=False)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tui.cli import main; sys.exit(main())",
            "ls",
            str(tmp_path),
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout.decode("utf-8"))
    assert rows[0]["path"] == "bad-\\xff"


def test_ls_and_metrics_on_a_file_say_it_is_not_a_folder(tmp_path, capsys):
    s.write_safetensors(tmp_path / "lone.safetensors", {"w": ("F32", (2, 2))})
    for command in ("ls", "metrics"):
        code, out, err = run_cli(capsys, command, str(tmp_path / "lone.safetensors"))
        assert code == 2 and out == "" and err.count("\n") == 1
        assert "not a folder" in err and "no such" not in err and "lone.safetensors" in err
    assert "ckpt-tui inspect" in run_cli(capsys, "ls", str(tmp_path / "lone.safetensors"))[2]


def test_ls_of_an_empty_folder_is_an_empty_list(tmp_path, capsys):
    code, out, err = run_cli(capsys, "ls", str(tmp_path), "--json")
    assert (code, json.loads(out), err) == (0, [], "")
    code, out, _ = run_cli(capsys, "ls", str(tmp_path))  # piped: the header line alone
    assert code == 0 and out.startswith("path\tkind\t") and out.count("\n") == 1


def test_metrics_of_the_parent_of_one_run_folder(tmp_path, capsys):
    run = s.write_run(tmp_path / "outputs", "exp1", folds=3, rows_per_fold=11)
    _, direct, _ = run_cli(capsys, "metrics", str(run), "--json")
    code, out, err = run_cli(capsys, "metrics", str(tmp_path / "outputs"), "--json")
    assert code == 0 and json.loads(out) == json.loads(direct)
    assert err.count("\n") == 1 and "exp1" in err  # says which run it used
    code, out, err = run_cli(capsys, "metrics", str(tmp_path), "--json")  # two levels up
    assert code == 0 and json.loads(out) == json.loads(direct)


def test_metrics_of_a_parent_of_several_runs_names_them(tmp_path, capsys):
    s.write_run(tmp_path, "exp1", folds=2, rows_per_fold=5)
    s.write_run(tmp_path, "exp2", folds=2, rows_per_fold=5)
    code, out, err = run_cli(capsys, "metrics", str(tmp_path), "--json")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "exp1" in err and "exp2" in err


def test_rich_output_never_passes_markup_or_control_characters_from_names(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # the table, not the piped rows
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")  # the escape sequences looked for are those of names
    names = ["[bold]x", "new\nline", "esc\x1b]0;pwned\x07", "[red]", "sp ace"]
    for name in names:
        s.write_hf_model(tmp_path / name, tokenizer=False)
    (tmp_path / "[red]" / "config.json").write_text("{bad")  # a problem line too
    code, out, _ = run_cli(capsys, "ls", str(tmp_path))
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    for shown in ("[bold]x", "new\\x0aline", "esc\\x1b]0;pwned\\x07", "[red]", "sp ace"):
        assert shown in out, shown
    assert "[red]: config.json: invalid JSON" in out
    code, out, _ = run_cli(capsys, "inspect", str(tmp_path / "esc\x1b]0;pwned\x07"))
    assert code == 0 and "\x1b" not in out and "esc\\x1b]0;pwned\\x07" in out
    code, out, _ = run_cli(capsys, "inspect", str(tmp_path / "[bold]x"))
    assert code == 0 and "[bold]x" in out.splitlines()[0]  # the title, not eaten as markup


def test_every_kind_is_in_the_format_contract():
    from tui.core.model import KINDS

    text = (REPO / "docs" / "FORMAT.md").read_text()
    section = text[text.index("## JSON CLI") :]
    assert all(f"`{kind}`" in section for kind in KINDS)


def test_ls_and_inspect_json_of_mindspore_files(tmp_path, capsys):
    from tests.fixtures.mindspore_files import write_50_epoch_dir

    paths = write_50_epoch_dir(tmp_path)
    code, out, _ = run_cli(capsys, "ls", str(tmp_path), "--json")
    rows = {r["path"]: r for r in json.loads(out)}
    assert code == 0 and all(set(r) == INFO_KEYS for r in rows.values())
    fer = rows["checkpoints_50epoch/fer-46_449.ckpt"]
    assert (fer["kind"], fer["epoch"], fer["epoch_step"], fer["step"]) == ("mindspore", 46.0, 449, 46 * 449)
    assert rows["checkpoints_50epoch_copy/best_model.ckpt"]["complete"] is False
    code, out, _ = run_cli(capsys, "inspect", str(paths["fer-46"]), "--json")
    data = json.loads(out)
    assert code == 0 and set(data) == INSPECT_KEYS
    assert data["weights"]["format"] == "mindspore" and data["weights"]["optimizer_tensors"] == 16
