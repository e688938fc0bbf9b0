"""Training data: load a CSV/Parquet, map labels, validate, tokenize, and build seeded data loaders.

Validation runs in every launched process before any process group or model exists, so bad input costs
a second and prints one line (``DataError``) instead of a distributed traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainer.config import Config
from trainer.sampling import EpochSeededSampler, longest_first


class DataError(ValueError):
    """Bad input data; the message is one line naming the file and the problem."""


# --------------------------------------------------------------------------------------------- loading
def read_table(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found (set data.path)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except Exception as e:  # pandas raises many types for a malformed file; all mean "unreadable"
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: cannot read ({first})") from None
    raise DataError(f"{path}: unsupported file type {suffix!r} (use .csv or .parquet)")


@dataclass(frozen=True)
class LabelMap:
    """Classes sorted (numerically for int labels, lexically otherwise); ids are positions in that order."""

    classes: tuple[Any, ...]

    @classmethod
    def from_values(cls, values: pd.Series) -> LabelMap:
        uniques = pd.unique(values)
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in uniques):
            return cls(tuple(sorted(int(v) for v in uniques)))
        return cls(tuple(sorted(str(v) for v in uniques)))

    @property
    def num_labels(self) -> int:
        return len(self.classes)

    def id2label(self) -> dict[int, str]:
        return {i: str(c) for i, c in enumerate(self.classes)}

    def label2id(self) -> dict[str, int]:
        return {str(c): i for i, c in enumerate(self.classes)}

    def encode(self, values: pd.Series) -> np.ndarray:
        lookup = self.label2id()
        return np.array([lookup[str(v)] for v in values], dtype=np.int64)

    def decode(self, ids: np.ndarray) -> list[Any]:
        return [self.classes[int(i)] for i in ids]


@dataclass
class Table:
    """The validated input: the frame (row order = file order), its ids, and the label map."""

    frame: pd.DataFrame
    ids: pd.Series
    labels: LabelMap
    path: Path
    label_column: str

    def label_ids(self) -> np.ndarray:
        return self.labels.encode(self.frame[self.label_column])


def _column(df: pd.DataFrame, name: str | None, role: str, path: Path) -> None:
    if name is not None and name not in df.columns:
        have = ", ".join(map(str, df.columns[:12]))
        raise DataError(f"{path}: no {role} column {name!r} (columns: {have})")


def validate(df: pd.DataFrame, cfg: Config, path: Path) -> Table:
    """Every check that can fail on the data itself; raises DataError with one line."""
    d, k = cfg.data, cfg.folds.num_folds
    _column(df, d.text_column, "text", path)
    _column(df, d.text_pair_column, "text pair", path)
    _column(df, d.label_column, "label", path)
    _column(df, d.id_column, "id", path)
    _column(df, d.group_column, "group", path)
    for name in (d.text_column, d.text_pair_column, d.label_column, d.group_column, d.id_column):
        if name is not None and df[name].isna().any():
            first = int(np.flatnonzero(df[name].isna().to_numpy())[0])
            raise DataError(
                f"{path}: column {name!r} has {int(df[name].isna().sum())} empty values "
                f"(first at row {first})"
            )
    if len(df) < k:
        raise DataError(f"{path}: {len(df)} rows, fewer than folds.num_folds = {k}")
    counts = df[d.label_column].astype(str).value_counts()
    if len(counts) < 2:
        raise DataError(f"{path}: column {d.label_column!r} has one class only ({counts.index[0]!r})")
    if counts.min() < k:
        raise DataError(
            f"{path}: class {counts.idxmin()!r} has {int(counts.min())} rows, fewer than "
            f"folds.num_folds = {k}; stratified folds need at least one per fold"
        )
    if d.group_column is not None and df[d.group_column].nunique() < k:
        raise DataError(
            f"{path}: {df[d.group_column].nunique()} groups in {d.group_column!r}, "
            f"fewer than folds.num_folds = {k}"
        )
    ids = df[d.id_column] if d.id_column else pd.Series(np.arange(len(df)), name="id")
    if ids.duplicated().any():
        raise DataError(
            f"{path}: id column {d.id_column!r} has duplicates (e.g. {ids[ids.duplicated()].iloc[0]!r})"
        )
    return Table(
        frame=df.reset_index(drop=True),
        ids=ids.reset_index(drop=True),
        labels=LabelMap.from_values(df[d.label_column]),
        path=Path(path),
        label_column=d.label_column,
    )


def load_and_validate(cfg: Config, path: Path) -> Table:
    return validate(read_table(path), cfg, Path(path))


# ------------------------------------------------------------------------------------------ tokenizing
class EncodedDataset:
    """Tokenized rows as a map-style dataset; ``row`` carries the input row index through gather."""

    def __init__(self, encodings: dict[str, list], labels: np.ndarray, rows: np.ndarray):
        self.encodings, self.labels, self.rows = encodings, labels, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {key: values[i] for key, values in self.encodings.items()}
        item["labels"] = int(self.labels[i])
        item["row"] = int(self.rows[i])
        return item

    def subset(self, positions: np.ndarray) -> EncodedDataset:
        """The rows at ``positions`` of this dataset (positions, not input row numbers)."""
        positions = np.asarray(positions)
        picked = {key: [values[i] for i in positions] for key, values in self.encodings.items()}
        return EncodedDataset(picked, self.labels[positions], self.rows[positions])

    def lengths(self) -> np.ndarray:
        """Tokens per row (before padding)."""
        return np.array([len(ids) for ids in self.encodings["input_ids"]], dtype=np.int64)


def encode(table: Table, cfg: Config, tokenizer, rows: np.ndarray) -> EncodedDataset:
    frame = table.frame.iloc[rows]
    texts = frame[cfg.data.text_column].astype(str).tolist()
    pairs = frame[cfg.data.text_pair_column].astype(str).tolist() if cfg.data.text_pair_column else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=cfg.data.max_length)
    return EncodedDataset(dict(enc), table.label_ids()[rows], np.asarray(rows))


# -------------------------------------------------------------------------------------------- loaders
def make_loaders(
    train_ds: EncodedDataset, valid_ds: EncodedDataset, tokenizer, cfg: Config, fold: int, num_processes: int = 1
):
    """(train loader, its sampler, valid loader) before ``accelerator.prepare``."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_multiple(cfg), return_tensors="pt")
    sampler = EpochSeededSampler(
        len(train_ds),
        cfg.train.seed,
        fold,
        lengths=train_ds.lengths() if cfg.train.group_by_length else None,
        rows_per_step=cfg.train.batch_size * cfg.train.grad_accum * num_processes,
    )
    options = loader_options(cfg)
    # Every DataLoader iteration draws a worker base seed, from the global torch RNG unless it has its own
    # generator. A resumed run starts a (skipping) iteration the killed run never started mid-epoch, so
    # that draw would shift the dropout masks of everything after it: exact resume needs private ones.
    # Workers change nothing here: the sampler runs in this process, and collating draws no random number.
    train = DataLoader(
        train_ds,
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(cfg.train.seed),
        **options,
    )
    # Predictions carry their row index, so any order works; longest first pads least.
    valid = DataLoader(
        valid_ds,
        batch_size=cfg.train.eval_batch_size,
        sampler=longest_first(valid_ds.lengths()).tolist(),
        collate_fn=collate,
        generator=torch.Generator().manual_seed(cfg.train.seed),
        **options,
    )
    return train, sampler, valid


def pad_multiple(cfg: Config) -> int | None:
    """Pad batches to a multiple of this many tokens: 8 feeds the GPU's tensor cores whole tiles; 32 keeps
    a compiled model to a few sequence lengths. On CPU without compilation, to the longest row only."""
    import torch

    if cfg.train.compile:
        return 32
    return 8 if torch.cuda.is_available() else None


def loader_options(cfg: Config) -> dict[str, Any]:
    """DataLoader worker and memory options: on a GPU, workers collate the next batches while the GPU
    runs, into pinned memory that copies to the GPU asynchronously. ``accelerate.skip_first_batches``
    keeps these options when it rebuilds a loader to resume mid-epoch."""
    import os

    import torch

    cuda = torch.cuda.is_available()
    workers = cfg.data.num_workers if cfg.data.num_workers is not None else (2 if cuda else 0)
    if workers:
        # The workers are forked after the table was tokenized with the tokenizers' thread pool: say
        # whether to use it in the workers, or each of them prints a warning about it.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return {"num_workers": workers, "pin_memory": cuda, "persistent_workers": workers > 0}
