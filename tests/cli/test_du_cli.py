"""`ckpt-tui du ROOT [--json]`: one JSON object, or a table with the free space line; bad ROOT: one line."""

from __future__ import annotations

import json
import shutil

from tests.core.test_du import _tree
from tui.cli import main
from tui.core import du


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_has_runs_totals_and_filesystem(tmp_path, capsys):
    root = _tree(tmp_path / "root")
    code, out, err = run_cli(capsys, "du", str(root), "--json")
    data = json.loads(out)
    assert code == 0 and err == ""
    assert data["totals"]["trash_bytes"] == 70 and data["runs"][0]["run"] == "runA"
    fs = data["filesystem"]
    assert 0 < fs["free_bytes"] <= fs["total_bytes"] == shutil.disk_usage(root).total
    assert fs["mount"] == str(du.mount_point(root))


def test_table_names_each_run_and_warns_when_low(tmp_path, capsys, monkeypatch):
    root = _tree(tmp_path / "root")
    monkeypatch.setattr(du, "free_space", lambda path, _usage=None: du.FreeSpace("/data", 100 << 30, 5 << 30))
    code, out, _ = run_cli(capsys, "du", str(root))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["run", "weights", "optimizer", "other", "total"]
    assert lines[1].split()[:3] == ["runA", "530", "B"]
    assert "trash: 70 B" in out
    assert "free: 5.0 GiB of 100.0 GiB (5%) on /data — low" in out


def test_missing_root_is_one_line(tmp_path, capsys):
    code, out, err = run_cli(capsys, "du", str(tmp_path / "nope"))
    assert code == 2 and out == ""
    assert err.strip() == f"ckpt-tui: {tmp_path / 'nope'}: no such folder"
