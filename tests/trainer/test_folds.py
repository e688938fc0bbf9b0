"""trainer.folds: stratified / grouped, seeded, written once."""

import numpy as np
import pandas as pd
import pytest

from trainer.folds import FoldsError, assign_folds, load_or_create, read_folds


def test_stratified_balanced_and_seeded():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    fold = assign_folds(labels, 5, seed=1)
    assert set(fold) == {0, 1, 2, 3, 4}
    for k in range(5):
        counts = np.bincount(labels[fold == k], minlength=3)
        assert counts.tolist() == [10, 6, 4]
    assert np.array_equal(fold, assign_folds(labels, 5, seed=1))
    assert not np.array_equal(fold, assign_folds(labels, 5, seed=2))


def test_groups_never_split():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 20, size=200)
    labels = rng.integers(0, 2, size=200)
    fold = assign_folds(labels, 4, seed=0, groups=groups)
    for g in np.unique(groups):
        assert len(set(fold[groups == g])) == 1


def test_written_once_and_reused(tmp_path):
    labels = np.array([0, 1] * 10)
    ids = pd.Series([f"r{i}" for i in range(20)])
    first = load_or_create(tmp_path, ids, labels, 2, seed=0)
    frame = pd.read_csv(tmp_path / "folds.csv")
    assert list(frame.columns) == ["row", "id", "fold"] and frame["id"].iloc[3] == "r3"
    # A different seed must not re-split: the file wins.
    assert np.array_equal(load_or_create(tmp_path, ids, labels, 2, seed=99), first)


def test_read_folds_rejects_other_data(tmp_path):
    load_or_create(tmp_path, pd.Series(range(20)), np.array([0, 1] * 10), 2, seed=0)
    with pytest.raises(FoldsError, match="describes 20 rows, the data has 21"):
        read_folds(tmp_path / "folds.csv", 21, 2)
    with pytest.raises(FoldsError, match="fold values outside"):
        read_folds(tmp_path / "folds.csv", 20, 1)
