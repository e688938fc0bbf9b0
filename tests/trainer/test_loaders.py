"""DataLoader options for GPUs (workers, pinned memory, padding to multiples) keep the seeded order, and
``skip_first_batches`` (resume mid-epoch) keeps the options and the batches."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.config import parse_args
from trainer.data import encode, loader_options, make_loaders, pad_multiple, validate
from trainer.demo import demo_dataframe


def _loaders(*argv: str):
    from tests.fixtures.ckpt import tiny_tokenizer

    cfg = parse_args(["--train.batch_size", "8", "--train.seed", "3", *argv])
    table = validate(demo_dataframe(num_rows=60), cfg, "demo.csv")
    tokenizer = tiny_tokenizer()  # demo words are mostly unknown to it: lengths still vary per row
    encoded = encode(table, cfg, tokenizer, np.arange(60))
    return make_loaders(encoded.subset(np.arange(40)), encoded.subset(np.arange(40, 60)), tokenizer, cfg, fold=1)


def _batches(loader) -> list[dict]:
    return [{k: v.tolist() for k, v in batch.items()} for batch in loader]


@pytest.mark.slow
def test_workers_give_the_same_batches_also_after_skipping():
    from accelerate import skip_first_batches

    plain, plain_sampler, plain_valid = _loaders("--data.num_workers", "0")
    workers, sampler, valid = _loaders("--data.num_workers", "2")
    assert (workers.num_workers, workers.persistent_workers) == (2, True) and plain.num_workers == 0
    for epoch in (0, 1):
        plain_sampler.set_epoch(epoch)
        sampler.set_epoch(epoch)
        expected = _batches(plain)
        assert _batches(workers) == expected
        skipped = skip_first_batches(workers, 2)
        assert skipped.num_workers == 2  # the rebuilt loader keeps the options
        assert _batches(skipped) == expected[2:]
    assert _batches(valid) == _batches(plain_valid)


def test_padding_and_worker_defaults_on_this_machine(monkeypatch):
    import torch

    cpu = parse_args([])
    assert pad_multiple(cpu) is None and loader_options(cpu)["num_workers"] == 0
    assert pad_multiple(parse_args(["--train.compile", "inductor"])) == 32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pad_multiple(cpu) == 8
    assert loader_options(cpu) == {"num_workers": 2, "pin_memory": True, "persistent_workers": True}
    assert loader_options(parse_args(["--data.num_workers", "0"]))["num_workers"] == 0


def test_batches_are_padded_to_the_multiple(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    train, _, _ = _loaders("--data.num_workers", "0")
    train.pin_memory = False  # no GPU to pin for
    lengths = {batch["input_ids"].shape[1] for batch in train}
    assert lengths and all(n % 8 == 0 for n in lengths)
