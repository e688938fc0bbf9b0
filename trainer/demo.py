"""The embedded default: a small learnable data set, a locally trained tokenizer and a tiny DeBERTa-v2.

With no arguments the trainer needs something to train that exists on every machine without a
download. Everything here is generated from a seed, so two machines (or two runs) materialise the same
files. ``materialize(output_dir)`` writes ``<output_dir>/_demo/data.csv`` and ``<output_dir>/_demo/model/``
once (committed with the checkpoint protocol) and reuses them afterwards, so folds.csv and predict.py can
point at real files.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

from tui.core.commit import atomic_dir, verify

DEMO_SEED = 1234
NUM_ROWS = 720
LABEL_NOISE = 0.06
# The BERT-style special tokens by their tokenizer role (kwargs of PreTrainedTokenizerFast), ids 0-4.
SPECIAL_TOKEN_ROLES = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}
SPECIAL_TOKENS = list(SPECIAL_TOKEN_ROLES.values())

# Three topics with their own words; the filler words are shared, so a model must find the topic words.
TOPIC_WORDS = {
    "sports": "goal match team coach striker league referee stadium season score penalty keeper "
    "tournament champion defender sprint race medal".split(),
    "cooking": "recipe oven garlic simmer flour butter saucepan roast spice dough onion pepper "
    "bake chef kitchen broth salad dessert".split(),
    "tech": "laptop server compiler database network kernel python cloud router keyboard "
    "software debug chip memory cluster browser sensor robot".split(),
}
FILLER = (
    "the a of and to in it was with for on this that very quite today then after before "
    "really just my our their some every again".split()
)
CLASS_WEIGHTS = {"sports": 0.42, "cooking": 0.33, "tech": 0.25}  # unbalanced: majority class is 42%


def demo_dataframe(num_rows: int = NUM_ROWS, seed: int = DEMO_SEED) -> pd.DataFrame:
    """Short sentences: 2-4 topic words among 4-9 fillers, one word from another topic in a third of them,
    and ``LABEL_NOISE`` of the labels flipped, so the task is learnable but not trivially perfect."""
    rng = random.Random(seed)
    labels = list(CLASS_WEIGHTS)
    rows = []
    for i in range(num_rows):
        label = rng.choices(labels, weights=[CLASS_WEIGHTS[c] for c in labels])[0]
        words = rng.sample(TOPIC_WORDS[label], rng.randint(3, 5))
        words += [rng.choice(FILLER) for _ in range(rng.randint(3, 7))]
        if rng.random() < 0.33:
            other = rng.choice([c for c in labels if c != label])
            words.append(rng.choice(TOPIC_WORDS[other]))
        rng.shuffle(words)
        if rng.random() < LABEL_NOISE:
            label = rng.choice([c for c in labels if c != label])
        rows.append({"id": f"demo-{i:04d}", "text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


def wordpiece_vocab(texts: list[str], max_words: int = 400) -> dict[str, int]:
    """A WordPiece vocabulary learned from ``texts``: specials, every character (also as a ``##`` suffix
    piece, so no word is ever [UNK]), then the most frequent words.

    Learned here rather than with ``tokenizers``' WordPieceTrainer, whose ties between equally frequent
    merges fall in hash-map order and so differ between processes: the demo must be the same bytes on
    every run, or a resumed run would tokenize differently from the run it continues.
    """
    from collections import Counter

    words = Counter(w for text in texts for w in text.lower().split())
    chars = sorted({c for w in words for c in w})
    pieces = SPECIAL_TOKENS + chars + [f"##{c}" for c in chars]
    ranked = sorted(words, key=lambda w: (-words[w], w))[:max_words]
    pieces += [w for w in ranked if w not in pieces]
    return {piece: i for i, piece in enumerate(pieces)}


def train_tokenizer(texts: list[str]):
    """A WordPiece tokenizer built from ``texts`` (no download), wrapped as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(vocab=wordpiece_vocab(texts), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=128, **SPECIAL_TOKEN_ROLES)


def tiny_deberta(vocab_size: int, labels: list[str], seed: int = DEMO_SEED):
    """A 2-layer, hidden-128 DeBERTa-v2 classifier with random weights (about 0.5M parameters).

    Hidden 64 with 2 heads was tried first: depending on the seed it stalls at the majority-class plateau;
    128 with 4 heads left it within the first two epochs on every seed tried."""
    import torch
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    config = DebertaV2Config(
        vocab_size=vocab_size,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=128,
        relative_attention=True,
        position_buckets=32,
        max_relative_positions=64,
        pos_att_type=["p2c", "c2p"],
        pooler_hidden_size=128,
        pad_token_id=0,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={c: i for i, c in enumerate(labels)},
    )
    torch.manual_seed(seed)
    return DebertaV2ForSequenceClassification(config)


def demo_paths(output_dir: Path) -> tuple[Path, Path]:
    base = Path(output_dir) / "_demo"
    return base / "data.csv", base / "model"


def materialize(output_dir: Path) -> tuple[Path, Path]:
    """Write (or reuse) the demo data CSV and model folder; returns their paths. One process only."""
    data_path, model_dir = demo_paths(output_dir)
    data_path.parent.mkdir(parents=True, exist_ok=True)
    df = demo_dataframe()
    if not data_path.exists():
        tmp = data_path.with_name(f".{data_path.name}.tmp")
        df.to_csv(tmp, index=False)
        tmp.replace(data_path)
    if verify(model_dir):
        tokenizer = train_tokenizer(df["text"].tolist())
        model = tiny_deberta(len(tokenizer), sorted(CLASS_WEIGHTS))
        with atomic_dir(model_dir, kind="base-model", fields={"source": "trainer.demo"}) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    return data_path, model_dir
