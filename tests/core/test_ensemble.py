"""The OOF metric of an ensemble across runs, and its spec file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss

from tests.fixtures.runs import write_kfold_run
from tui.core.ensemble import EnsembleError, Member, build_spec, oof_metrics, read_spec, write_spec


def _oof(run, folds):
    return pd.concat(pd.read_csv(run / f"valid_df_fold_{k}.csv") for k in folds).set_index("id")


def sklearn_oof(parts):
    """parts: (run, folds, weight of the run); the weighted mean of probabilities over shared ids."""
    frames = [(_oof(run, folds), w) for run, folds, w in parts]
    ids = sorted(set.intersection(*(set(f.index) for f, _ in frames)))
    total = sum(w for *_, w in parts)
    probs = sum(w / total * f.loc[ids, ["prob_neg", "prob_pos"]].to_numpy() for f, w in frames)
    labels = frames[0][0].loc[ids, "label"].to_numpy()
    pred = np.array(["neg", "pos"])[probs.argmax(axis=1)]
    return len(ids), {
        "accuracy": accuracy_score(labels, pred),
        "f1_macro": f1_score(labels, pred, average="macro"),
        "log_loss": log_loss(labels, probs, labels=["neg", "pos"]),
    }


@pytest.fixture()
def two_runs(tmp_path):
    return (
        write_kfold_run(tmp_path, "a", skill=0.8, seed=1, folds=3),
        write_kfold_run(tmp_path, "b", skill=0.6, seed=2, folds=3),
    )


def test_weighted_oof_equals_sklearn(two_runs):
    a, b = two_runs
    members = [Member(a, k, 1.0) for k in range(3)] + [Member(b, k, 2.0) for k in range(3)]
    got = oof_metrics(members)
    n, want = sklearn_oof([(a, range(3), 3.0), (b, range(3), 6.0)])
    assert got["n"] == n == 40 and got["runs"] == 2 and got["rows_left_out"] == 0
    for name, value in want.items():
        assert got[name] == pytest.approx(value)


def test_only_rows_present_in_every_run_count(two_runs):
    a, b = two_runs
    members = [Member(a, 0), Member(a, 1), Member(b, 1), Member(b, 2)]
    got = oof_metrics(members)
    n, want = sklearn_oof([(a, [0, 1], 2.0), (b, [1, 2], 2.0)])
    assert got["n"] == n and 0 < n < 40 and got["rows_left_out"] > 0
    assert got["f1_macro"] == pytest.approx(want["f1_macro"])


def test_disagreeing_labels_and_missing_csvs_are_one_line_errors(two_runs):
    a, b = two_runs
    frame = pd.read_csv(b / "valid_df_fold_0.csv")
    frame.loc[0, "label"] = "pos" if frame.loc[0, "label"] == "neg" else "neg"
    frame.to_csv(b / "valid_df_fold_0.csv", index=False)
    with pytest.raises(EnsembleError, match="disagree on its label"):
        oof_metrics([Member(a, 0), Member(b, 0)])
    with pytest.raises(EnsembleError, match="valid_df_fold_7.csv: missing"):
        oof_metrics([Member(a, 7)])
    with pytest.raises(EnsembleError, match="weight"):
        oof_metrics([Member(a, 0, 0.0)])


def test_spec_needs_fold_folders_and_reads_back(two_runs, tmp_path):
    a, _ = two_runs
    with pytest.raises(EnsembleError, match="no <model>_fold_0/ model folder"):
        build_spec([Member(a, 0)], tmp_path / "e.json")
    for k in range(2):
        (a / f"tiny_fold_{k}").mkdir()
    spec = build_spec([Member(a, 0, 3.0), Member(a, 1, 1.0)], tmp_path / "out" / "e.json")
    assert [m["weight"] for m in spec["members"]] == [0.75, 0.25]
    assert spec["members"][0]["folder"] == "../a/tiny_fold_0"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "e.json").write_text(json.dumps(spec))
    assert read_spec(tmp_path / "out" / "e.json") == [
        (tmp_path / "out" / "../a/tiny_fold_0", 0, 0.75),
        (tmp_path / "out" / "../a/tiny_fold_1", 1, 0.25),
    ]
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(EnsembleError, match="bad.json: not a ckpt-tui/ensemble/1 file"):
        read_spec(tmp_path / "bad.json")


def test_write_spec_never_overwrites_another_file(two_runs, tmp_path):
    a, _ = two_runs
    (a / "tiny_fold_0").mkdir()
    cv = (a / "cv.json").read_bytes()
    with pytest.raises(EnsembleError, match="cv.json: exists and is not an ensemble spec; not overwritten"):
        write_spec([Member(a, 0)], a / "cv.json")
    assert (a / "cv.json").read_bytes() == cv
    first = write_spec([Member(a, 0)], tmp_path / "e.json")
    again = write_spec([Member(a, 0)], tmp_path / "e.json")  # a spec is replaced
    assert again["oof"] == first["oof"]
