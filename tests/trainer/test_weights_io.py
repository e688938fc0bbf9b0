"""write_weights writes what save_pretrained writes (names and values), with transformers' private
helpers for tied weights and load-time renames, and without them (the fallback)."""

from __future__ import annotations

import sys

import pytest

from tests.fixtures.ckpt import tiny_model


def tied_masked_lm():
    """BERT with its MLM decoder tied to the word embeddings: one tensor under two names."""
    from transformers import BertConfig, BertForMaskedLM

    from tests.fixtures.real import TINY_BERT

    return BertForMaskedLM(BertConfig(vocab_size=40, **TINY_BERT)).eval()


@pytest.mark.parametrize("without_private_helpers", [False, True], ids=["transformers-helpers", "fallback"])
@pytest.mark.parametrize("make", [tiny_model, tied_masked_lm], ids=["deberta-classifier", "tied-bert-mlm"])
def test_write_weights_matches_save_pretrained(tmp_path, monkeypatch, make, without_private_helpers):
    import torch
    import transformers.modeling_utils
    from safetensors.torch import load_file

    from trainer.weights_io import write_weights

    model = make()
    model.save_pretrained(str(tmp_path / "hf"))  # before any patching: save_pretrained uses the helpers
    if without_private_helpers:
        monkeypatch.setitem(sys.modules, "transformers.core_model_loading", None)  # import -> ImportError
        monkeypatch.delattr(transformers.modeling_utils, "remove_tied_weights_from_state_dict")
    (tmp_path / "ours").mkdir()
    hashes = write_weights(model, model.state_dict(), tmp_path / "ours", "2GB")
    assert set(hashes) == {"model.safetensors"}
    want, got = (
        load_file(tmp_path / "hf" / "model.safetensors"),
        load_file(tmp_path / "ours" / "model.safetensors"),
    )
    assert set(got) == set(want)
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor), name
