"""The order rows are batched in: seeded per (seed, fold, epoch), optionally grouped by length.

A resumed run must replay the killed run's order exactly, so every order here is a pure function of its
arguments; ``skip_first_batches`` then drops the batches the killed run had consumed.

Length grouping is Hugging Face's ``group_by_length`` idea: rows are shuffled, cut into mega-batches of up
to ``MEGA_BATCHES`` (4) batches, each mega-batch is sorted by length and cut into batches, and the batches are shuffled.
Batches then hold rows of similar length, so dynamic padding adds few pad tokens, and the order stays
random at the scale of an epoch. The samplers yield row indices; the DataLoader's BatchSampler cuts them
into consecutive batches and accelerate deals batch ``i`` to process ``i % num_processes``, so the rows
of one optimizer step (batch size x accumulation x processes, consecutive in the order) are what is
sorted and shuffled as one unit: the processes and micro-batches of one step get rows of similar length
(no process waits for another), and a step holds the same rows whether it is made of 2 processes or of
2 accumulated micro-batches on one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# Batches per mega-batch. HF's mega_batch_mult is 50: every batch then holds rows of nearly one length, and
# on the whole-job benchmark (bench/bench_trainer.py, 2 epochs) that cost 0.064 OOF accuracy against the HF
# script; with 4 the batches mix lengths again (OOF within 0.002 of HF) and most padding is still gone.
MEGA_BATCHES = 4


def epoch_seed(seed: int, fold: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, fold, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def length_grouped_order(lengths: np.ndarray, rows_per_step: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(len(lengths))`` whose consecutive ``rows_per_step``-sized chunks hold rows of
    similar length, in random order; the chunk with the longest row comes first (an out-of-memory error
    shows at the first step, not hours in), and the one short chunk, if any, comes last (so every other
    chunk is whole and chunk boundaries stay where the BatchSampler cuts)."""
    lengths = np.asarray(lengths)
    n = len(lengths)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # Fewer batches per mega-batch on small sets, as HF does, so the order keeps some randomness.
    mega = max(1, min(MEGA_BATCHES, n // (4 * rows_per_step))) * rows_per_step
    shuffled = rng.permutation(n)
    chunks = []
    for start in range(0, n, mega):
        part = shuffled[start : start + mega]
        part = part[np.argsort(-lengths[part], kind="stable")]
        chunks += [part[i : i + rows_per_step] for i in range(0, len(part), rows_per_step)]
    short = [chunks.pop()] if len(chunks[-1]) < rows_per_step else []
    chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    if chunks:
        longest = max(range(len(chunks)), key=lambda i: lengths[chunks[i]].max())
        chunks.insert(0, chunks.pop(longest))
    return np.concatenate(chunks + short)


def longest_first(lengths: np.ndarray) -> np.ndarray:
    """Evaluation order: by length, longest first (padding waste near zero, any OOM at the first batch).
    Ties keep row order, so the order is the same on every process and every run."""
    return np.argsort(-np.asarray(lengths), kind="stable")


class EpochSeededSampler:
    """Row order for one epoch, a pure function of (seed, fold, epoch) and the inputs given here.

    With ``lengths`` the order is length-grouped in chunks of ``rows_per_step`` rows (batch size x
    accumulation x processes; :func:`length_grouped_order`); without, it is a plain permutation."""

    def __init__(
        self,
        num_rows: int,
        seed: int,
        fold: int,
        *,
        lengths: np.ndarray | None = None,
        rows_per_step: int = 1,
    ):
        if lengths is not None and len(lengths) != num_rows:
            raise ValueError(f"{len(lengths)} lengths for {num_rows} rows")
        self.num_rows, self.seed, self.fold, self.epoch = num_rows, seed, fold, 0
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.rows_per_step = rows_per_step

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_rows

    def order(self) -> np.ndarray:
        rng = np.random.default_rng(epoch_seed(self.seed, self.fold, self.epoch))
        if self.lengths is None:
            return rng.permutation(self.num_rows)
        return length_grouped_order(self.lengths, self.rows_per_step, rng)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())
