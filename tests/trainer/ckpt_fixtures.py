"""Tiny offline models and tokenizers for the checkpoint / LoRA / predict tests (nothing is downloaded)."""

from __future__ import annotations

from contextlib import contextmanager

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "the", "movie", "was", "very", "not", "plot"]
LABELS = ["neg", "pos"]


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {tok: i for i, tok in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


def tiny_model(seed: int = 0, model_type: str = "deberta-v2"):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(WORDS) + 4,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
        pad_token_id=0,
    )
    return AutoModelForSequenceClassification.from_config(config).eval()


@contextmanager
def fresh_accelerate_state():
    """A plain one-process Accelerator's world; accelerate's singleton state is reset afterwards so that
    other tests can build an Accelerator with other settings."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    try:
        yield
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        PartialState._reset_state()


def spread_weights(model, seed: int, scale: float = 0.5):
    """Add noise to every weight: freshly initialised tiny models predict ~uniform probabilities, too
    alike for a test that must tell two models (or a model and its reload) apart."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    return model
