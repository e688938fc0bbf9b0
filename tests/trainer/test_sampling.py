"""trainer.sampling: seeded, length-grouped row order, as accelerate deals it to the processes."""

import numpy as np
import pytest

from trainer.sampling import MEGA_BATCHES, EpochSeededSampler, epoch_seed, length_grouped_order, longest_first


def _lengths(n: int, seed: int = 0) -> np.ndarray:
    """Long-tailed, like text: most rows short, a few near the truncation length."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(20), 0.8, n).astype(int), 3, 128)


def _order(n=1000, seed=1, fold=0, epoch=0, batch_size=8, num_processes=1, lengths=None):
    lengths = _lengths(n) if lengths is None else lengths
    s = EpochSeededSampler(n, seed, fold, lengths=lengths, rows_per_step=batch_size * num_processes)
    s.set_epoch(epoch)
    return list(s)


def _chunks(order, size):
    return [order[i : i + size] for i in range(0, len(order), size)]


def _padded_tokens(order, lengths, size):
    return sum(len(c) * lengths[c].max() for c in _chunks(np.asarray(order), size))


@pytest.mark.parametrize(
    ("n", "batch_size", "num_processes"), [(1000, 8, 1), (997, 8, 2), (30, 32, 1), (5, 2, 3)]
)
def test_grouped_order_is_a_permutation(n, batch_size, num_processes):
    order = _order(n, batch_size=batch_size, num_processes=num_processes)
    assert sorted(order) == list(range(n))


def test_order_depends_only_on_seed_fold_epoch():
    assert _order(seed=1, fold=0, epoch=3) == _order(seed=1, fold=0, epoch=3)
    variants = [_order(seed=s, fold=f, epoch=e) for s, f, e in [(1, 0, 3), (1, 0, 4), (1, 1, 3), (2, 0, 3)]]
    assert len({tuple(v) for v in variants}) == 4
    # without lengths: the plain permutation of earlier versions, so their runs resume the same way
    plain = EpochSeededSampler(50, 1, 0)
    plain.set_epoch(3)
    assert list(plain) == np.random.default_rng(epoch_seed(1, 0, 3)).permutation(50).tolist()


def test_batches_are_mega_batches_sorted_by_length_then_shuffled():
    """The specification, step by step: shuffle, cut into mega-batches (MEGA_BATCHES batches, fewer on
    small sets), sort each by length, cut into batches, shuffle the batches; longest batch first."""
    n, rows_per_step, seed = 3000, 12, 5
    lengths = _lengths(n, seed=3)
    got = length_grouped_order(lengths, rows_per_step, np.random.default_rng(seed))

    shuffled = np.random.default_rng(seed).permutation(n)  # the first draw of the same generator
    mega = MEGA_BATCHES * rows_per_step  # 3000 // (4 * 12) = 62 batches would fit: capped
    assert MEGA_BATCHES < 62
    expected = []
    for start in range(0, n, mega):
        part = shuffled[start : start + mega]
        part = part[np.argsort(-lengths[part], kind="stable")]
        expected += [tuple(sorted(c)) for c in _chunks(part, rows_per_step)]
    got_chunks = _chunks(got, rows_per_step)
    assert sorted(tuple(sorted(c)) for c in got_chunks) == sorted(expected)
    assert lengths[got_chunks[0]].max() == lengths.max()
    assert all(np.all(np.diff(lengths[c]) <= 0) for c in got_chunks)  # each batch is a sorted slice
    # the batches are shuffled: not in mega-batch order, and not sorted by length overall
    assert [tuple(sorted(c)) for c in got_chunks] != expected
    firsts = [lengths[c[0]] for c in got_chunks[1:]]
    assert firsts != sorted(firsts, reverse=True)


def test_grouping_cuts_padding_and_the_short_batch_comes_last():
    n, size = 1003, 16
    lengths = _lengths(n)
    grouped = _order(n, batch_size=size, lengths=lengths)
    plain = np.random.default_rng(epoch_seed(1, 0, 0)).permutation(n)
    assert _padded_tokens(grouped, lengths, size) < 0.6 * _padded_tokens(plain, lengths, size)
    chunks = _chunks(grouped, size)
    assert [len(c) for c in chunks] == [size] * (n // size) + [n % size]


def test_orders_differ_between_epochs_but_keep_their_grouping():
    lengths = _lengths(1000)
    a, b = _order(epoch=0, lengths=lengths), _order(epoch=1, lengths=lengths)
    assert a != b
    assert {tuple(sorted(c)) for c in _chunks(a, 8)} != {tuple(sorted(c)) for c in _chunks(b, 8)}


def test_processes_of_one_step_get_rows_of_similar_length_and_skipping_resumes_the_same_batches():
    """Through accelerate's own sharding: batch i goes to process i % 2; every row once per epoch;
    the two batches of one step come from one sorted step's rows; a skip replays the tail exactly."""
    from accelerate.data_loader import BatchSamplerShard, SkipBatchSampler
    from torch.utils.data import BatchSampler

    n, batch_size, procs = 640, 8, 2
    lengths = _lengths(n)
    sampler = EpochSeededSampler(n, 7, 1, lengths=lengths, rows_per_step=batch_size * procs)
    sampler.set_epoch(2)
    inner = BatchSampler(sampler, batch_size, drop_last=False)
    shards = [list(BatchSamplerShard(inner, procs, r)) for r in range(procs)]
    assert sorted(i for shard in shards for batch in shard for i in batch) == list(range(n))
    for b0, b1 in zip(*shards, strict=True):
        assert lengths[b0].min() >= lengths[b1].max()  # consecutive slices of one sorted step
    skipped = list(SkipBatchSampler(BatchSamplerShard(inner, procs, 1), skip_batches=13))
    assert skipped == shards[1][13:]


def test_longest_first_is_stable_and_complete():
    lengths = np.array([3, 9, 3, 12, 9])
    assert longest_first(lengths).tolist() == [3, 1, 4, 0, 2]


def test_sampler_rejects_lengths_of_another_size():
    with pytest.raises(ValueError, match="3 lengths for 4 rows"):
        EpochSeededSampler(4, 0, 0, lengths=np.ones(3))


def _datasets(n_train=300, n_valid=37):
    from trainer.data import EncodedDataset

    def encoded(n, seed):
        lengths = _lengths(n, seed)
        ids = [[2] + [5] * int(k - 2) + [3] for k in lengths]
        return EncodedDataset({"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]},
                              np.zeros(n, dtype=np.int64), np.arange(n) + 1000 * seed)  # fmt: skip

    return encoded(n_train, 1), encoded(n_valid, 2)


def test_loaders_group_the_rows_of_an_optimizer_step_and_evaluate_longest_first():
    """One process accumulating 2 batches of 8 steps on the same 16 rows as 2 processes with one batch
    each; evaluation batches come longest first, every row once."""
    from tests.fixtures.ckpt import tiny_tokenizer
    from trainer.config import parse_args
    from trainer.data import make_loaders

    train_ds, valid_ds = _datasets()
    orders = []
    for accum, procs in ((2, 1), (1, 2), (1, 1)):
        cfg = parse_args(["--train.batch_size", "8", "--train.grad_accum", str(accum)])
        _, sampler, valid = make_loaders(
            train_ds, valid_ds, tiny_tokenizer(), cfg, fold=0, num_processes=procs
        )
        sampler.set_epoch(1)
        orders.append(list(sampler))
    assert orders[0] == orders[1] != orders[2]
    widths = [batch["input_ids"].shape[1] for batch in valid]
    rows = [int(r) for batch in valid for r in batch["row"]]
    assert widths == sorted(widths, reverse=True) and sorted(rows) == sorted(valid_ds.rows.tolist())
    cfg = parse_args(["--train.group_by_length", "false"])
    _, plain, _ = make_loaders(train_ds, valid_ds, tiny_tokenizer(), cfg, fold=0)
    plain.set_epoch(1)
    assert list(plain) == np.random.default_rng(epoch_seed(42, 0, 1)).permutation(300).tolist()
