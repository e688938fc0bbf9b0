"""The inputs of the whole-job benchmarks: a built-in text set with long-tailed lengths, its tokenizer, and
DeBERTa-v2 models built from a config (no download, nothing random between runs).

``text_frame()``: 2,400 rows, 6 classes, 5-128 tokens per row with a long tail (median 18 tokens, 90th
percentile 44, 99th 89), generated from a seed. Each class has its own words, half of them shared with the
next class, so a model has to weigh the evidence; long rows are mostly filler with topic words spread thin,
and 6 % of the labels are flipped.

``save_model(folder, shape, ...)``: a classifier with identical initial weights for every contender, saved
with the tokenizer (the demo's WordPiece learner, trained on this text) so each contender loads the same
folder. Shapes: ``bench`` (hidden 256 x 4 layers, the CPU benchmark) and ``xsmall`` (microsoft/deberta-v3-
xsmall's shape: hidden 384 x 12 layers, 128,100-token vocabulary, 512 positions; the GPU check).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pandas as pd

SEED = 2026
NUM_ROWS = 2400
CLASSES = ("astronomy", "baking", "finance", "football", "gardening", "medicine")
MIN_WORDS, MAX_WORDS = 3, 126  # + [CLS] and [SEP]: 5-128 tokens (every word is in the vocabulary)
LABEL_NOISE = 0.06

_WORDS = {
    "astronomy": "orbit galaxy comet telescope nebula planet star moon eclipse asteroid",
    "baking": "oven dough flour butter yeast crust pastry sugar whisk icing",
    "finance": "stock bond market dividend interest loan budget equity inflation broker",
    "football": "goal striker referee league keeper penalty match coach stadium tackle",
    "gardening": "soil seed compost hedge tulip rake pruning mulch greenhouse weed",
    "medicine": "patient doctor dose clinic vaccine surgery symptom nurse fever therapy",
}
FILLER = (
    "the a of and to in it was with for on this that very quite today then after before really just my "
    "our their some every again when while because although also still never always often maybe perhaps "
    "yesterday tomorrow morning evening people thing things way day days time year years week much many "
    "more most less little big small new old good bad great long short high low same other next last "
    "first own right left early late hard easy"
).split()


def class_words(label: str) -> list[str]:
    """The label's own words plus the first half of the next class's: neighbours share evidence."""
    nxt = CLASSES[(CLASSES.index(label) + 1) % len(CLASSES)]
    return _WORDS[label].split() + _WORDS[nxt].split()[:5]


def _num_words(rng: random.Random) -> int:
    # log-normal: median e^2.8 ~ 16 words, a long right tail cut at MAX_WORDS
    return max(MIN_WORDS, min(MAX_WORDS, int(math.exp(rng.gauss(2.8, 0.75)))))


def text_frame(num_rows: int = NUM_ROWS, seed: int = SEED) -> pd.DataFrame:
    """Columns id, text, label; the same rows on every machine for a seed."""
    rng = random.Random(seed)
    rows = []
    for i in range(num_rows):
        label = CLASSES[rng.randrange(len(CLASSES))]
        n = _num_words(rng)
        topic = max(1, round(n * rng.uniform(0.08, 0.2)))
        pool = class_words(label)
        words = [rng.choice(pool) for _ in range(topic)]
        if rng.random() < 0.4:  # a word of another class, as real text has
            words.append(rng.choice(_WORDS[rng.choice([c for c in CLASSES if c != label])].split()))
        words += [rng.choice(FILLER) for _ in range(max(0, n - len(words)))]
        rng.shuffle(words)
        if rng.random() < LABEL_NOISE:
            label = rng.choice([c for c in CLASSES if c != label])
        rows.append({"id": f"row-{i:05d}", "text": " ".join(words[:MAX_WORDS]), "label": label})
    return pd.DataFrame(rows)


SHAPES = {
    # hidden, layers, heads, intermediate, vocabulary (None: the tokenizer's), positions, position buckets
    "bench": (256, 4, 4, 1024, None, 128, 32),
    "xsmall": (384, 12, 6, 1536, 128_100, 512, 256),
    "tiny": (64, 2, 2, 128, None, 128, 32),  # smoke runs
}


def save_model(folder: Path, frame: pd.DataFrame, shape: str = "bench", seed: int = 0) -> Path:
    """A DeBERTa-v2 classifier of ``shape`` with seeded random weights and a tokenizer learned from
    ``frame``'s text, saved to ``folder`` (safetensors + tokenizer files)."""
    import torch
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    from trainer.demo import train_tokenizer

    hidden, layers, heads, inter, vocab, positions, buckets = SHAPES[shape]
    tokenizer = train_tokenizer(frame["text"].tolist())
    labels = sorted(frame["label"].astype(str).unique())
    config = DebertaV2Config(
        vocab_size=vocab or len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=inter, max_position_embeddings=positions,
        relative_attention=True, position_buckets=buckets, max_relative_positions=-1,
        pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=True,
        position_biased_input=False, pooler_hidden_size=hidden, pad_token_id=0, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={c: i for i, c in enumerate(labels)},
    )  # fmt: skip
    torch.manual_seed(seed)
    model = DebertaV2ForSequenceClassification(config)
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def token_lengths(frame: pd.DataFrame) -> list[int]:
    """Tokens per row with [CLS]/[SEP] (every word is one token of the learned vocabulary)."""
    return [len(t.split()) + 2 for t in frame["text"]]
