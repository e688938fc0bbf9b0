"""A subset of bench/hostile_corpus.py, one case per input class: every command runs as a fresh process
on a hostile tree and must end within the corpus's timeout, without a traceback, with exit 0/1/2, no raw
ESC/BEL/bidi character in its output and under the RSS budget (the whole corpus: run the bench)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tui.core.trash import remove_tree

BENCH = Path(__file__).parents[2] / "bench" / "hostile_corpus.py"
CASES = ("fifo:trainer_state.json", "dev-zero:vocab.txt", "deep-in-checkpoint-990", "int-401-digits",
         "trash-size:1e999", "trash-entry:fifo", "csv:inf", "usage-errors-echo", "evil-names")  # fmt: skip


def _corpus():
    spec = importlib.util.spec_from_file_location("hostile_corpus", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and /dev/zero are POSIX")
@pytest.mark.parametrize("case", CASES)
def test_hostile_case_never_hangs_nor_tracebacks(tmp_path, case):
    corpus = _corpus()
    try:
        rows = corpus.run_corpus(tmp_path / "t", only=(case,), quick=True)
    finally:
        remove_tree(tmp_path / "t")  # pytest's own clean-up recurses through the 990-level tree
    assert rows, case
    bad = [(r["argv"], r["bad"], r["stderr"][-300:]) for r in rows if r["bad"]]
    assert not bad
