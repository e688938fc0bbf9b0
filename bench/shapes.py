"""Trees whose files have the shapes users have: the builders shared by the inspection benchmarks.

* ``deberta_v3_xsmall_tensors()``: the 203 tensor names, dtypes and shapes of a
  ``DebertaV2ForSequenceClassification`` built from microsoft/deberta-v3-xsmall's config (12 layers,
  hidden 384, vocab 128,100): what a fine-tuned fold model's ``model.safetensors`` holds.
* ``write_checkpoint(folder, kind)``: an HF Trainer ``checkpoint-N`` (model.safetensors, config.json,
  trainer_state.json with a real-sized log history, optimizer.pt/scheduler.pt/rng_state.pth/
  training_args.bin) or a K-fold fold model (model.safetensors, config.json, tokenizer files,
  trainer_state.json). Weight data is a sparse hole: ~283 MB apparent per model, a few KB on disk.
  The pickles are plain-pickle zips laid out as ``torch.save`` lays them out, with one storage record
  per optimizer tensor (data.pkl of a real AdamW state for 203 parameters), so a static scan reads
  what it would read in a real checkpoint. Each checkpoint's storages hold other bytes (one byte each),
  so their CRCs differ from checkpoint to checkpoint, as a real optimizer state's do.
* ``make_tree(root, n, unique_headers=False)``: ``n`` checkpoints as K-fold runs of 5 folds: per fold 1
  fold model and 1 ``checkpoint-N`` (half of each), 10 checkpoints per run folder. Fine-tunes of one model
  share their safetensors header byte for byte (as real ones do); ``unique_headers`` gives each its own.
* ``write_sharded(folder, shards, per_shard)``: a ``model.safetensors.index.json`` with ``shards`` sparse
  shards (100 shards x 100 tensors of Llama-layer shapes: ~97 GB apparent).

Standard library only (with the test fixtures' safetensors writer), so a bench builds its tree before
any contender imports anything.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import random
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.fixtures.synthetic import safetensors_bytes

Tensors = dict[str, tuple[str, tuple[int, ...]]]
# The cache does not store keys younger than 2 s (tui/core/cache.py RACY_SECONDS): a bench lets the tree it
# built age this long before a timed run.
RACY_WAIT = 2.5


def compile_like_an_install() -> None:
    """Write tui/'s .pyc files, as an install does (PYTHONDONTWRITEBYTECODE does not stop compileall)."""
    tui = Path(__file__).resolve().parents[1] / "tui"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tui)], check=True)


def deberta_v3_xsmall_tensors(*, labels: int = 3) -> Tensors:
    hidden, inter, vocab, layers = 384, 1536, 128_100, 12
    t: Tensors = {"deberta.embeddings.word_embeddings.weight": ("F32", (vocab, hidden))}

    def add(prefix: str, parts: tuple[tuple[str, tuple[int, ...]], ...]) -> None:
        # Linear layers and LayerNorms alike: a weight of the shape given, a bias of its first dimension.
        for name, shape in parts:
            t[f"{prefix}{name}.weight"] = ("F32", shape)
            t[f"{prefix}{name}.bias"] = ("F32", shape[:1])

    add("deberta.embeddings.", (("LayerNorm", (hidden,)),))
    for i in range(layers):
        add(f"deberta.encoder.layer.{i}.", (("attention.self.query_proj", (hidden, hidden)),
                                            ("attention.self.key_proj", (hidden, hidden)),
                                            ("attention.self.value_proj", (hidden, hidden)),
                                            ("attention.output.dense", (hidden, hidden)),
                                            ("attention.output.LayerNorm", (hidden,)),
                                            ("intermediate.dense", (inter, hidden)),
                                            ("output.dense", (hidden, inter)),
                                            ("output.LayerNorm", (hidden,))))  # fmt: skip
    t["deberta.encoder.rel_embeddings.weight"] = ("F32", (512, hidden))
    add("deberta.encoder.", (("LayerNorm", (hidden,)),))
    add("", (("pooler.dense", (hidden, hidden)), ("classifier", (labels, hidden))))
    return t


def safetensors_head(tensors: Tensors) -> tuple[bytes, int]:
    """The header block and data size, as safetensors writes them (names sorted)."""
    return safetensors_bytes(dict(sorted(tensors.items())), metadata={"format": "pt"})


def write_sparse_safetensors(path: Path, head: bytes, data_len: int) -> None:
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + data_len)


class _Storage:
    """Stands for a torch storage in a pickle: pickled as a persistent id, as torch.save does."""

    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Storage):
            return ("storage", "FloatStorage", obj.key, "cpu", obj.numel)
        return None


def torch_like_zip(obj: Any, archive: str) -> bytes:
    """A zip laid out like ``torch.save``: ``<archive>/data.pkl``, one ``data/<key>`` member per storage
    (one byte each: the scan never reads storages), ``version``."""
    storages: list[_Storage] = []

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)
        elif isinstance(o, _Storage):
            storages.append(o)

    walk(obj)
    buf = io.BytesIO()
    pkl = io.BytesIO()
    _TorchLikePickler(pkl, protocol=2).dump(obj)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{archive}/data.pkl", pkl.getvalue())
        z.writestr(f"{archive}/byteorder", "little")
        for s in storages:
            z.writestr(f"{archive}/data/{s.key}", b"\0")
        z.writestr(f"{archive}/version", "3\n")
    return buf.getvalue()


class Varied:
    """A ``torch_like_zip`` whose one-byte storages get other bytes per copy (``copy(seed)``): the layout,
    names, sizes and offsets stay, the storage CRCs change, as between two checkpoints of one training run.
    Patched in place (a byte and two CRC fields per storage), so a tree of thousands builds fast."""

    _CRC = [zlib.crc32(bytes([b])).to_bytes(4, "little") for b in range(256)]

    def __init__(self, raw: bytes, *, lr: float | None = None) -> None:
        self.raw = raw
        z = zipfile.ZipFile(io.BytesIO(raw))
        # (local header CRC, data byte, central record CRC) offsets of each storage record
        self.at: list[tuple[int, int, int]] = []
        self.pkl: tuple[int, int, int, int] | None = None  # data.pkl's (local CRC, start, end, central CRC)
        pos = z.start_dir
        for info in z.infolist():
            nlen, xlen, clen = struct.unpack_from("<3H", raw, pos + 28)
            lnlen, lxlen = struct.unpack_from("<2H", raw, info.header_offset + 26)
            start = info.header_offset + 30 + lnlen + lxlen
            if "/data/" in info.filename:
                self.at.append((info.header_offset + 14, start, pos + 16))
            elif info.filename.endswith("data.pkl"):
                self.pkl = (info.header_offset + 14, start, start + info.file_size, pos + 16)
            pos += 46 + nlen + xlen + clen
        # the BINFLOAT operand holding the learning rate, which a real optimizer state changes per step
        self.lr_at = raw.find(b"G" + struct.pack(">d", lr)) + 1 if lr is not None and self.pkl else 0

    def copy(self, seed: int, *, lr: float | None = None) -> bytes:
        buf = bytearray(self.raw)
        values = random.Random(seed).randbytes(len(self.at))
        for (local, data, central), b in zip(self.at, values, strict=True):
            buf[data] = b
            buf[local : local + 4] = buf[central : central + 4] = self._CRC[b]
        if lr is not None and self.lr_at > 0 and self.pkl is not None:
            buf[self.lr_at : self.lr_at + 8] = struct.pack(">d", lr)
            local, start, end, central = self.pkl
            buf[local : local + 4] = buf[central : central + 4] = zlib.crc32(buf[start:end]).to_bytes(4, "little")
        return bytes(buf)


def adamw_state(tensors: Tensors) -> dict[str, Any]:
    """The structure of ``AdamW.state_dict()`` over these parameters (exp_avg, exp_avg_sq, step each)."""
    state: dict[int, Any] = {}
    key = 0
    for i, (_, shape) in enumerate(tensors.values()):
        entry = {}
        for slot in ("step", "exp_avg", "exp_avg_sq"):
            entry[slot] = _Storage(str(key), 1 if slot == "step" else math.prod(shape))
            key += 1
        state[i] = entry
    group = {"lr": 2e-5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False,
             "foreach": None, "maximize": False, "capturable": False, "differentiable": False,
             "fused": True, "params": list(range(len(tensors)))}  # fmt: skip
    return {"state": state, "param_groups": [group]}


def config_json() -> dict[str, Any]:
    return {
        "architectures": ["DebertaV2ForSequenceClassification"],
        "model_type": "deberta-v2",
        "hidden_size": 384,
        "intermediate_size": 1536,
        "num_attention_heads": 6,
        "num_hidden_layers": 12,
        "vocab_size": 128100,
        "max_position_embeddings": 512,
        "relative_attention": True,
        "position_buckets": 256,
        "pos_att_type": ["p2c", "c2p"],
        "id2label": {"0": "neg", "1": "neu", "2": "pos"},
        "label2id": {"neg": 0, "neu": 1, "pos": 2},
        "dtype": "float32",
        "transformers_version": "5.0.0",
    }


def trainer_state(step: int, best: str | None, *, logging_steps: int = 10) -> dict[str, Any]:
    """HF Trainer's trainer_state.json after ``step`` steps, logging every ``logging_steps``."""
    log: list[dict[str, Any]] = []
    for s in range(logging_steps, step + 1, logging_steps):
        log.append({"epoch": round(s / 500, 4), "grad_norm": 1.5, "learning_rate": 2e-5 * (1 - s / 3000),
                    "loss": round(1.1 / (1 + s / 500), 4), "step": s})  # fmt: skip
        if s % 250 == 0:
            log.append({"epoch": round(s / 500, 4), "eval_f1_macro": round(0.6 + s / 10000, 4),
                        "eval_loss": 0.5, "eval_runtime": 10.1, "step": s})  # fmt: skip
    return {
        "best_global_step": step,
        "best_metric": 0.6 + step / 10000,
        "best_model_checkpoint": best,
        "epoch": step / 500,
        "eval_steps": 250,
        "global_step": step,
        "is_hyper_param_search": False,
        "is_local_process_zero": True,
        "is_world_process_zero": True,
        "log_history": log,
        "logging_steps": logging_steps,
        "max_steps": 3000,
        "num_train_epochs": 6,
        "save_steps": 250,
        "train_batch_size": 16,
    }


class Templates:
    """The bytes of every file, built once and copied (each copy is its own inode)."""

    def __init__(self) -> None:
        tensors = deberta_v3_xsmall_tensors()
        self.spec = tensors
        self.tensors = len(tensors)
        self.parameters = sum(math.prod(s) for _, s in tensors.values())
        self.head, self.data_len = safetensors_head(tensors)
        self.config = json.dumps(config_json(), indent=2).encode()
        self.optimizer = Varied(torch_like_zip(adamw_state(tensors), "optimizer"), lr=2e-5)
        self.args = torch_like_zip({"output_dir": "out", "learning_rate": 2e-5, "seed": 42}, "training_args")
        self.tokenizer_config = json.dumps(
            {
                "tokenizer_class": "DebertaV2Tokenizer",
                "model_max_length": 512,
                "do_lower_case": False,
                "pad_token": "[PAD]",
                "cls_token": "[CLS]",
                "sep_token": "[SEP]",
                "unk_token": "[UNK]",
            }  # fmt: skip
        ).encode()
        self.special = json.dumps({"pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]"}).encode()


def scheduler_state(lr: float, step: int) -> bytes:
    """A linear-decay LambdaLR's state_dict after ``step`` steps from ``lr`` (what HF Trainer saves)."""
    state = {"base_lrs": [lr], "last_epoch": step, "_step_count": step + 1, "_get_lr_called_within_step": False,
             "_last_lr": [lr * (1 - step / 3000)], "lr_lambdas": [None]}  # fmt: skip
    return torch_like_zip(state, "scheduler")


def rng_state(seed: int) -> bytes:
    """rng_state.pth as HF Trainer saves it: Python's Mersenne state (625 ints, its own per checkpoint)
    and the CPU generator's state tensor."""
    return torch_like_zip({"python": random.Random(seed).getstate(), "cpu": _Storage("0", 5056)}, "rng_state")


def write_checkpoint(
    folder: Path, kind: str, step: int, t: Templates, *, unique: str | None = None, seed: int = 0,
    lr: float = 2e-5,
) -> None:
    """``kind`` is "checkpoint" (HF Trainer checkpoint-N) or "fold" (a fold model). ``unique``: a header
    of its own (its ``__metadata__`` holds it), where fine-tunes of one model share theirs byte for byte.
    ``seed``: the bytes of the optimizer and RNG storages and the RNG state (other seeds, other bytes and
    CRCs); ``lr``: the run's learning rate, which its optimizer and scheduler states hold."""
    folder.mkdir(parents=True, exist_ok=True)
    head = t.head
    if unique is not None:
        head, _ = safetensors_bytes(dict(sorted(t.spec.items())), metadata={"format": "pt", "id": unique})
    write_sparse_safetensors(folder / "model.safetensors", head, t.data_len)
    (folder / "config.json").write_bytes(t.config)
    if kind == "checkpoint":
        best = str(folder.parent / f"checkpoint-{step}")
        (folder / "trainer_state.json").write_text(json.dumps(trainer_state(step, best), indent=2))
        for name, raw in (("optimizer.pt", t.optimizer.copy(seed, lr=lr)), ("scheduler.pt", scheduler_state(lr, step)),
                          ("rng_state.pth", rng_state(seed)), ("training_args.bin", t.args)):  # fmt: skip
            (folder / name).write_bytes(raw)
    else:
        (folder / "trainer_state.json").write_text(json.dumps(trainer_state(step, "."), indent=2))
        (folder / "tokenizer_config.json").write_bytes(t.tokenizer_config)
        (folder / "special_tokens_map.json").write_bytes(t.special)


def make_tree(root: Path, n: int, *, unique_headers: bool = False) -> int:
    """``n`` checkpoints (rounded up to 10) in K-fold runs; returns how many were written.
    ``unique_headers``: no two safetensors headers alike (the worst case for parsing)."""
    t = Templates()
    written = 0
    run = 0
    while written < n:
        base = root / f"exp_{run:04d}"
        for k in range(5):
            for folder, kind in (
                (f"deberta_fold_{k}", "fold"),
                (f"hf_out_fold_{k}/checkpoint-1500", "checkpoint"),
            ):
                unique = str(written) if unique_headers else None
                # each experiment its own learning rate: optimizer.pt and scheduler.pt differ between runs as
                # in a sweep, and are alike across one run's folds (same schedule, same step)
                lr = 2e-5 * (1 + run / 100)
                write_checkpoint(base / folder, kind, 1500, t, unique=unique, seed=written, lr=lr)
                written += 1
        run += 1
    return written


def layer_tensors() -> Iterator[tuple[str, tuple[str, tuple[int, ...]]]]:
    """Decoder layers of a Llama-style model (hidden 2048, MLP 5632, 4 KV heads, BF16), forever."""
    layer = 0
    while True:
        p = f"model.layers.{layer}."
        for proj, shape in (("self_attn.q_proj", (2048, 2048)), ("self_attn.k_proj", (256, 2048)),
                            ("self_attn.v_proj", (256, 2048)), ("self_attn.o_proj", (2048, 2048)),
                            ("mlp.gate_proj", (5632, 2048)), ("mlp.up_proj", (5632, 2048)),
                            ("mlp.down_proj", (2048, 5632)), ("input_layernorm", (2048,)),
                            ("post_attention_layernorm", (2048,))):  # fmt: skip
            yield f"{p}{proj}.weight", ("BF16", shape)
        layer += 1


def write_sharded(folder: Path, shards: int = 100, per_shard: int = 100) -> int:
    """An index and ``shards`` sparse shards of ``per_shard`` tensors each; returns the apparent bytes
    (100 x 100 tensors: ~97 GB)."""
    folder.mkdir(parents=True, exist_ok=True)
    weight_map: dict[str, str] = {}
    total = 0
    source = layer_tensors()
    for s in range(1, shards + 1):
        name = f"model-{s:05d}-of-{shards:05d}.safetensors"
        tensors: Tensors = dict(next(source) for _ in range(per_shard))
        head, data_len = safetensors_head(tensors)
        write_sparse_safetensors(folder / name, head, data_len)
        weight_map.update(dict.fromkeys(tensors, name))
        total += len(head) + data_len
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048}
    (folder / "config.json").write_text(json.dumps(config))
    return total


def disk_bytes(root: Path) -> int:
    return sum(os.lstat(os.path.join(d, f)).st_blocks * 512 for d, _, fs in os.walk(root) for f in fs)
