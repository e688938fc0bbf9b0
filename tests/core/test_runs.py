"""The leaderboard across K-fold runs: finding runs, ranking, status, config keys that differ."""

from __future__ import annotations

import json

import pytest
from sklearn.metrics import f1_score, log_loss

from tests.fixtures.runs import write_kfold_run, write_runs
from tui.core.runs import find_runs, leaderboard, table


@pytest.fixture()
def root(tmp_path):
    write_runs(tmp_path)
    return tmp_path


def test_every_run_found_and_ranked_best_first(root):
    board = leaderboard(root)
    assert board.metric == "f1_macro" and not board.lower_is_better
    paths = [r.path for r in board.runs]
    assert sorted(paths) == ["kaggle/exp7", "live", "lr1e-4", "lr3e-5"]
    scores = [r.oof for r in board.runs]
    assert scores == sorted(scores, reverse=True)
    assert board.runs[-1].path == "lr1e-4"  # the weak run


def test_status_folds_and_sources(root):
    runs = {r.path: r for r in leaderboard(root).runs}
    assert runs["live"].status == "running" and (runs["live"].folds_done, runs["live"].folds_total) == (1, 2)
    assert runs["lr3e-5"].status == "complete" and runs["lr3e-5"].source == "cv.json"
    kaggle = runs["kaggle/exp7"]
    assert (kaggle.source, kaggle.status, kaggle.folds_done, kaggle.folds_total) == (
        "valid_df",
        "unknown",
        2,
        None,
    )
    assert kaggle.size_bytes > 0


def test_lower_is_better_metric_ranks_ascending(root):
    board = leaderboard(root, "log_loss")
    assert board.lower_is_better
    values = [r.oof for r in board.runs]
    assert values == sorted(values)


def test_recomputed_oof_equals_sklearn(tmp_path):
    import pandas as pd

    run = write_kfold_run(tmp_path, "k", skill=0.7, seed=9, cv=False, run_json=False, folds=3)
    frame = pd.concat(pd.read_csv(run / f"valid_df_fold_{k}.csv") for k in range(3))
    row = leaderboard(tmp_path).runs[0]
    assert row.oof == pytest.approx(f1_score(frame.label, frame.prediction, average="macro"))
    assert leaderboard(tmp_path, "log_loss").runs[0].oof == pytest.approx(
        log_loss(frame.label, frame[["prob_neg", "prob_pos"]].to_numpy(), labels=["neg", "pos"])
    )


def test_config_keys_that_differ_named_first(root):
    board = leaderboard(root)
    assert board.differing[:2] == ["train.lr", "train.epochs"]
    assert "run.run_name" not in board.differing and "train.batch_size" not in board.differing
    headers, rows = table(board)
    assert headers[:5] == ["#", "run", "model", "status", "folds"] and "lr" in headers and "epochs" in headers
    lr = headers.index("lr")
    assert {r[1]: r[lr] for r in rows}["lr1e-4"] == "0.0001"


def test_cv_json_without_the_metric_is_recomputed(root):
    cv = json.loads((root / "lr3e-5" / "cv.json").read_text())
    cv["oof"].pop("accuracy")
    (root / "lr3e-5" / "cv.json").write_text(json.dumps(cv))
    runs = {r.path: r for r in leaderboard(root, "accuracy").runs}
    assert runs["lr3e-5"].source == "valid_df" and runs["lr3e-5"].oof is not None


def test_broken_files_are_problems_not_errors(root):
    (root / "lr3e-5" / "run.json").write_text("{not json")
    (root / "lr1e-4" / "valid_df_fold_0.csv").write_text("nothing,useful\n1,2\n")
    (root / "lr1e-4" / "cv.json").unlink()
    runs = {r.path: r for r in leaderboard(root).runs}
    assert any("run.json" in p for p in runs["lr3e-5"].problems)
    assert runs["lr1e-4"].folds["0"]["n"] is None and runs["lr1e-4"].oof is not None  # fold 1 still counts


def test_runs_are_not_searched_through_links_or_the_trash(root, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    write_kfold_run(outside, "far", skill=0.5, seed=5)
    (root / "link").symlink_to(outside)
    write_kfold_run(root / ".ckpt-trash" / "x", "gone", skill=0.5, seed=6)
    assert all("far" not in str(p) and "gone" not in str(p) for p in find_runs(root))


def test_recomputed_metrics_follow_the_csvs(tmp_path):
    import pandas as pd

    run = write_kfold_run(tmp_path, "k", skill=0.7, seed=9, cv=False, run_json=False)
    first = leaderboard(tmp_path).runs[0].oof
    assert leaderboard(tmp_path).runs[0].oof == first  # a cache hit gives the same answer
    frame = pd.read_csv(run / "valid_df_fold_0.csv")
    frame["prediction"] = frame["label"]
    frame.to_csv(run / "valid_df_fold_0.csv", index=False)
    assert leaderboard(tmp_path).runs[0].oof != first
