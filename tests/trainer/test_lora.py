"""LoRA: the fold folder holds the merged model (plain from_pretrained) and the adapter beside it."""

from __future__ import annotations

import json

import pytest

from trainer.checkpoint import save_fold_model
from trainer.lora import apply_lora, default_target_modules, head_modules

INPUT_IDS = [[2, 4, 11, 8, 3, 0], [2, 7, 15, 12, 9, 3]]
MASK = [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]


def _logits(model):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor(INPUT_IDS), attention_mask=torch.tensor(MASK)).logits


def _trained_adapter_model(model_type: str):
    """A LoRA model whose adapters and head differ from their init (lora_B starts at zero, which would
    make the merge a no-op and the test unable to fail)."""
    import torch

    from tests.fixtures.ckpt import tiny_model

    peft_model = apply_lora(tiny_model(seed=3, model_type=model_type), {"r": 4, "alpha": 8, "dropout": 0.1})
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in peft_model.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * 0.5)
    return peft_model.eval()


def test_default_targets_and_heads():
    from tests.fixtures.ckpt import tiny_model

    deberta, bert = tiny_model(model_type="deberta-v2"), tiny_model(model_type="bert")
    assert default_target_modules(deberta) == ["query_proj", "key_proj", "value_proj"]
    assert default_target_modules(bert) == ["query", "key", "value"]
    assert head_modules(deberta) == ["pooler", "classifier"]
    assert head_modules(bert) == ["classifier"]


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["deberta-v2", "bert"])
def test_lora_fold_folder_reloads_merged_with_same_logits(tmp_path, model_type):
    import torch
    from accelerate import Accelerator
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from tests.fixtures.ckpt import fresh_accelerate_state, tiny_model, tiny_tokenizer

    with fresh_accelerate_state():
        accelerator = Accelerator(cpu=True)
        model = accelerator.prepare(_trained_adapter_model(model_type))
        expected = _logits(model)
        target = tmp_path / "tiny_fold_1"
        save_fold_model(
            accelerator, model, tiny_tokenizer(), target, trainer_state={"log_history": []},
            metric={"name": "accuracy", "value": 0.5}, step=3, fold=1, lora=True,
        )  # fmt: skip

    assert {p.name for p in (target / "adapter").iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
    }
    assert not (target / "adapter_config.json").exists()  # the top folder is a plain model
    assert json.loads((target / "config.json").read_text())["architectures"][0].endswith(
        "SequenceClassification"
    )

    merged = AutoModelForSequenceClassification.from_pretrained(target).eval()
    assert not any("lora" in key or "base_layer" in key for key in merged.state_dict())
    torch.testing.assert_close(_logits(merged), expected, rtol=0, atol=1e-5)
    assert not torch.allclose(_logits(tiny_model(seed=3, model_type=model_type)), expected, atol=1e-3)

    # The adapter beside it applies to the original base model and reproduces the same logits.
    adapter_model = PeftModel.from_pretrained(
        tiny_model(seed=3, model_type=model_type), target / "adapter"
    ).eval()
    torch.testing.assert_close(_logits(adapter_model), expected, rtol=0, atol=1e-5)
