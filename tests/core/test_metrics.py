"""Fold metrics against sklearn, column variants, cv.json reproduction and malformed CSVs."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss

from tests.fixtures import synthetic as s
from tui.core.metrics import MetricsError, compute_metrics


def random_rows(
    seed: int, n: int, classes=("a", "b", "c"), *, label="label", pred="prediction", prob="prob_"
):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        raw = [rng.random() + 0.01 for _ in classes]
        total = sum(raw) * (1 + rng.random())  # not normalised: the reader renormalises
        y = rng.choice(classes)
        p = classes[max(range(len(classes)), key=lambda j: raw[j])]
        row = {"row_id": i, label: y, pred: p}
        row.update({f"{prob}{c}": raw[j] / total for j, c in enumerate(classes)})
        rows.append(row)
    return rows


def sk_truth(rows, classes, label="label", pred="prediction", prob="prob_"):
    y = [r[label] for r in rows]
    p = [r[pred] for r in rows]
    probs = np.array([[r[f"{prob}{c}"] for c in classes] for r in rows])
    probs = probs / probs.sum(axis=1, keepdims=True)
    return {
        "n": len(rows),
        "accuracy": accuracy_score(y, p),
        "f1_macro": f1_score(y, p, average="macro"),
        "log_loss": log_loss(y, probs, labels=list(classes)),
    }


def test_metrics_match_sklearn_per_fold_oof_mean_and_population_std(tmp_path):
    classes = ("a", "b", "c")
    folds = [random_rows(k, 30 + 7 * k, classes) for k in range(3)]
    for k, rows in enumerate(folds):
        s.write_valid_df(tmp_path / f"valid_df_fold_{k}.csv", rows)
    got = compute_metrics(tmp_path)
    truths = [sk_truth(rows, classes) for rows in folds]
    for k, truth in enumerate(truths):
        assert got["folds"][str(k)] == pytest.approx(truth)
    assert got["oof"] == pytest.approx(sk_truth([r for rows in folds for r in rows], classes))
    for m in ("accuracy", "f1_macro", "log_loss"):
        values = [t[m] for t in truths]
        assert got["mean"][m] == pytest.approx(np.mean(values))
        assert got["std"][m] == pytest.approx(np.std(values, ddof=0))
    assert got["columns"] == {
        "id": "row_id",
        "label": "label",
        "prediction": "prediction",
        "probabilities": {c: f"prob_{c}" for c in classes},
    }
    assert set(got) == {"folds", "oof", "mean", "std", "columns", "problems"} and got["problems"] == []


@pytest.mark.parametrize(
    "label, pred, prob",
    [("target", "pred", "proba_"), ("y", "preds", "p_"), ("labels", "predicted", "prob_")],
)
def test_column_variants_are_accepted_and_reported(tmp_path, label, pred, prob):
    rows = random_rows(1, 25, ("x", "y"), label=label, pred=pred, prob=prob)
    s.write_valid_df(tmp_path / "valid_df_fold_0.csv", rows)
    got = compute_metrics(tmp_path)
    assert got["folds"]["0"] == pytest.approx(sk_truth(rows, ("x", "y"), label, pred, prob))
    assert (got["columns"]["label"], got["columns"]["prediction"]) == (label, pred)
    assert got["columns"]["probabilities"] == {"x": f"{prob}x", "y": f"{prob}y"}


def test_reproduces_the_runs_cv_json(tmp_path):
    run = s.write_run(tmp_path, "run1", folds=3, rows_per_fold=17)
    cv = json.loads((run / "cv.json").read_text())
    got = compute_metrics(run)
    for k, fold in cv["folds"].items():
        assert got["folds"][k] == pytest.approx(
            {m: fold[m] for m in ("n", "accuracy", "f1_macro", "log_loss")}
        )
    for part in ("oof", "mean", "std"):
        assert got[part] == pytest.approx(cv[part], abs=1e-12)


def test_integer_labels_without_probabilities(tmp_path):
    rows = [{"id": i, "label": i % 3, "prediction": (i * 2) % 3} for i in range(12)]
    s.write_valid_df(tmp_path / "valid_df_fold_0.csv", rows)
    got = compute_metrics(tmp_path)
    y, p = [r["label"] for r in rows], [r["prediction"] for r in rows]
    assert got["folds"]["0"]["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert got["folds"]["0"]["f1_macro"] == pytest.approx(f1_score(y, p, average="macro"))
    assert got["folds"]["0"]["log_loss"] is None and got["mean"]["log_loss"] is None
    assert got["columns"]["probabilities"] is None


def test_one_malformed_csv_is_that_folds_error(tmp_path):
    s.write_valid_df(tmp_path / "valid_df_fold_0.csv", random_rows(0, 10, ("a", "b")))
    (tmp_path / "valid_df_fold_1.csv").write_bytes(b'id,label,prediction\n1,"a,b\n\xff\xfe')
    s.write_valid_df(tmp_path / "valid_df_fold_2.csv", random_rows(2, 10, ("a", "b")))
    got = compute_metrics(tmp_path)
    bad = got["folds"]["1"]
    assert bad["n"] is None and bad["error"].startswith("valid_df_fold_1.csv: ") and "\n" not in bad["error"]
    assert got["oof"]["n"] == 20
    good = [got["folds"]["0"]["accuracy"], got["folds"]["2"]["accuracy"]]
    assert got["mean"]["accuracy"] == pytest.approx(np.mean(good))


@pytest.mark.parametrize(
    "content, word",
    [
        ("id,text\n1,hello\n", "no label column"),
        ("id,label\n1,a\n", "no prediction column"),
        ("id,label,prediction\n", "no rows"),
        ("", "not a readable CSV"),
        ("label,prediction,prob_a\na,a,oops\n", "not a probability"),
    ],
)
def test_only_bad_csvs_raise_one_line(tmp_path, content, word):
    (tmp_path / "valid_df_fold_0.csv").write_text(content)
    with pytest.raises(MetricsError) as e:
        compute_metrics(tmp_path)
    assert word in str(e.value) and "\n" not in str(e.value) and "valid_df_fold_0.csv" in str(e.value)


def test_no_fold_files(tmp_path):
    with pytest.raises(MetricsError, match="no valid_df_fold"):
        compute_metrics(tmp_path)


def test_folds_whose_labels_look_like_numbers_in_one_file_and_text_in_another_are_scored(tmp_path):
    """A fold holding only "inf" (or "1") and one holding "a"/"b": read_csv's category type inferred float
    categories for the first, and joining the folds raised (found by the hostile-CSV property test)."""
    (tmp_path / "valid_df_fold_0.csv").write_text("label,prediction\ninf\n1,1\n")
    (tmp_path / "valid_df_fold_1.csv").write_text("label,prediction,prob_a,prob_b\na,a,0.9,0.1\nb,b,0.2,0.8\n")
    got = compute_metrics(tmp_path)
    assert got["folds"]["0"]["n"] == 2 and got["folds"]["0"]["accuracy"] == 0.5  # "inf" vs "" wrong, "1" right
    assert got["oof"]["n"] == 4 and got["oof"]["accuracy"] == 0.75
