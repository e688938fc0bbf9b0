"""Sizes that tell the truth: allocated bytes beside apparent size, and `inspect` of a folder holding
one weight file."""

from __future__ import annotations

import json
import os

from tests.fixtures import synthetic as s
from tui.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sparse_file_reports_allocated_below_apparent_size(tmp_path, capsys):
    # write_safetensors leaves the data as a hole: 4 MiB apparent, a block or so on disk
    s.write_safetensors(tmp_path / "m" / "model.safetensors", {"w": ("F32", (1024, 1024))})
    s.write_safetensors(tmp_path / "lone.safetensors", {"w": ("F32", (1024, 1024))})
    code, out, _ = run_cli(capsys, "ls", str(tmp_path), "--json")
    rows = {r["path"]: r for r in json.loads(out)}
    assert code == 0
    for row in rows.values():
        assert row["size_bytes"] > 4 << 20
        assert row["allocated_bytes"] is not None and row["allocated_bytes"] < 1 << 20
    code, out, _ = run_cli(capsys, "inspect", str(tmp_path / "lone.safetensors"), "--json")
    assert code == 0 and json.loads(out)["allocated_bytes"] < 1 << 20


def test_allocated_bytes_of_a_written_folder_covers_its_data(tmp_path, capsys):
    folder = tmp_path / "ck"
    s.write_hf_model(folder, tokenizer=False)
    (folder / "blob.bin").write_bytes(os.urandom(64 << 10))
    code, out, _ = run_cli(capsys, "ls", str(tmp_path), "--json")
    row = next(r for r in json.loads(out) if r["path"] == "ck")
    assert code == 0 and row["allocated_bytes"] >= 64 << 10


def test_inspect_of_a_folder_holding_only_model_safetensors(tmp_path, capsys):
    s.write_safetensors(tmp_path / "only" / "model.safetensors", {"w": ("F32", (2, 2))})
    code, out, err = run_cli(capsys, "inspect", str(tmp_path / "only"), "--json")
    data = json.loads(out)
    assert code == 0 and data["kind"] == "safetensors-file" and data["parameters"] == 4
    assert data["weights"]["parameters"] == 4
    assert "no weights" not in err and "model.safetensors" in err and err.count("\n") == 1


def test_inspect_of_a_folder_with_two_weight_files_is_still_an_error(tmp_path, capsys):
    s.write_safetensors(tmp_path / "two" / "a.safetensors", {"w": ("F32", (2, 2))})
    s.write_safetensors(tmp_path / "two" / "b.safetensors", {"w": ("F32", (2, 2))})
    code, out, err = run_cli(capsys, "inspect", str(tmp_path / "two"))
    assert code == 2 and out == "" and "not a checkpoint" in err
