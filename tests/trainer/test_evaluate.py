"""trainer.evaluate: metrics, valid_df columns (docs/FORMAT.md), cv.json arithmetic."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from trainer.config import parse_args
from trainer.data import validate
from trainer.evaluate import compute, cv_summary, is_better, valid_frame


def _table(pairs=False):
    df = pd.DataFrame(
        {"id": ["x", "y", "z", "w"], "text": list("abcd"), "label": ["neg", "pos", "pos", "neg"]}
    )
    argv = ["--data.id_column", "id", "--folds.num_folds", "2"]
    if pairs:
        df["t2"] = list("efgh")
        argv += ["--data.text_pair_column", "t2"]
    cfg = parse_args(argv)
    return validate(df, cfg, "d.csv"), cfg


def test_compute_matches_sklearn_and_renormalises():
    labels = np.array([0, 1, 2, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]])
    m = compute(labels, probs * 3)  # unnormalised rows are renormalised
    assert m["accuracy"] == 0.75
    assert m["log_loss"] == pytest.approx(log_loss(labels, probs, labels=[0, 1, 2]))


def test_log_loss_uses_all_classes_even_when_absent():
    m = compute(np.array([0, 0]), np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1]]))
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8])))


def test_is_better_by_mode():
    assert is_better(0.5, None, "max") and is_better(0.6, 0.5, "max") and not is_better(0.5, 0.5, "max")
    assert is_better(0.4, 0.5, "min") and not is_better(0.6, 0.5, "min")


def test_valid_frame_columns_and_order():
    table, cfg = _table(pairs=True)
    frame = valid_frame(table, cfg, np.array([2, 0]), np.array([[0.2, 0.8], [0.9, 0.1]]))
    assert list(frame.columns) == ["id", "text", "text_pair", "label", "prediction", "prob_neg", "prob_pos"]
    assert frame["id"].tolist() == ["x", "z"]  # sorted by input row, not gather order
    assert frame["label"].tolist() == ["neg", "pos"] and frame["prediction"].tolist() == ["neg", "pos"]


def test_cv_summary_oof_mean_std():
    table, cfg = _table()
    f0 = valid_frame(table, cfg, np.array([0, 1]), np.array([[0.9, 0.1], [0.6, 0.4]]))  # 1 of 2 right
    f1 = valid_frame(table, cfg, np.array([2, 3]), np.array([[0.2, 0.8], [0.7, 0.3]]))  # 2 of 2 right
    cv, oof = cv_summary({0: f0, 1: f1}, {0: 5, 1: None}, table.labels, "accuracy")
    assert cv["folds"]["0"]["accuracy"] == 0.5 and cv["folds"]["1"]["accuracy"] == 1.0
    assert cv["folds"]["0"]["best_step"] == 5 and cv["folds"]["0"]["n"] == 2
    assert cv["oof"] == pytest.approx(
        {"n": 4, **compute(np.array([0, 1, 1, 0]), oof[["prob_neg", "prob_pos"]].to_numpy())}
    )
    assert cv["mean"]["accuracy"] == 0.75 and cv["std"]["accuracy"] == 0.25  # population std
    assert list(oof.columns)[-1] == "fold" and oof["fold"].tolist() == [0, 0, 1, 1]
