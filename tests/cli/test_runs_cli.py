"""`ckpt-tui runs ROOT`: the leaderboard as JSON and as a table."""

from __future__ import annotations

import json

from tests.fixtures.runs import write_runs
from tui.cli import main


def test_runs_json_ranked_with_differing_keys(tmp_path, capsys):
    write_runs(tmp_path)
    assert main(["runs", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metric"] == "f1_macro" and out["lower_is_better"] is False
    assert [r["path"] for r in out["runs"]][0] == "lr3e-5"
    assert out["differing"][:2] == ["train.lr", "train.epochs"]
    first = out["runs"][0]
    assert first["config"]["train.lr"] == 3e-5 and first["folds_done"] == 2 and first["status"] == "complete"
    assert set(first) >= {"oof", "mean", "std", "folds", "size_bytes", "model", "source"}


def test_runs_table_and_metric_option(tmp_path, capsys):
    write_runs(tmp_path)
    assert main(["runs", str(tmp_path), "--metric", "log_loss"]) == 0
    out = capsys.readouterr().out
    assert "oof log_loss" in out and "lower is better" in out and "running" in out
    assert out.index("lr3e-5") < out.index("lr1e-4")


def test_runs_missing_root_is_one_line(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder" in err
