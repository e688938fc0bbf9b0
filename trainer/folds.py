"""Fold assignment: computed once with a seed, saved as ``folds.csv`` (docs/FORMAT.md), never recomputed.

Reusing the file on resume matters: a re-split with another library version or row order would put
validation rows of a finished fold into the training rows of the next one and leak them into the OOF score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trainer.outputs import write_csv_atomic
from tui.core.names import FOLDS_FILE


class FoldsError(ValueError):
    """folds.csv that does not fit the data; one line."""


def assign_folds(
    labels: np.ndarray, num_folds: int, seed: int, groups: np.ndarray | None = None
) -> np.ndarray:
    """Fold index per row: stratified by label; with ``groups``, all rows of a group share a fold."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    labels = np.asarray(labels)
    fold = np.full(len(labels), -1, dtype=np.int64)
    if groups is None:
        splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(labels)), labels)
    else:
        splitter = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(labels)), labels, groups=np.asarray(groups))
    for k, (_, valid_idx) in enumerate(splits):
        fold[valid_idx] = k
    return fold


def folds_frame(ids: pd.Series, fold: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"row": np.arange(len(fold)), "id": ids.to_numpy(), "fold": fold})


def read_folds(path: Path, num_rows: int, num_folds: int) -> np.ndarray:
    """The saved fold per row, checked against the data it must describe."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise FoldsError(f"{path}: unreadable ({e})") from None
    if list(frame.columns[:3]) != ["row", "id", "fold"]:
        raise FoldsError(f"{path}: expected columns row,id,fold, found {','.join(map(str, frame.columns))}")
    if len(frame) != num_rows or not np.array_equal(frame["row"].to_numpy(), np.arange(num_rows)):
        raise FoldsError(f"{path}: describes {len(frame)} rows, the data has {num_rows}; use a new run_name")
    fold = frame["fold"].to_numpy()
    if fold.min() < 0 or fold.max() >= num_folds:
        raise FoldsError(f"{path}: fold values outside 0..{num_folds - 1}")
    return fold.astype(np.int64)


def load_or_create(
    run_dir: Path,
    ids: pd.Series,
    labels: np.ndarray,
    num_folds: int,
    seed: int,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Read ``run_dir/folds.csv`` when it exists, otherwise compute and write it. Main process only."""
    path = Path(run_dir) / FOLDS_FILE
    if path.exists():
        return read_folds(path, len(labels), num_folds)
    fold = assign_folds(labels, num_folds, seed, groups)
    write_csv_atomic(path, folds_frame(ids, fold))  # a kill leaves no folds.csv or a whole one
    return fold
