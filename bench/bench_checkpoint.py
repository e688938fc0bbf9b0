"""Checkpoint save throughput: save_fold_model (commit protocol: fsync, rename, sha256 manifest) vs a
plain sequential write + fsync of the same bytes. One run, side by side; prints the ratio.

    python bench/bench_checkpoint.py [--hidden 384 --layers 12 --vocab 128100 --repeats 8]

The default model has deberta-v3-xsmall's shape (~70M parameters, ~280 MB fp32).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_model(hidden: int, layers: int, vocab: int):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "deberta-v2", vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden, max_position_embeddings=512,
        relative_attention=True, position_buckets=256, pos_att_type=["p2c", "c2p"], position_biased_input=False,
        num_labels=2,
    )  # fmt: skip
    return AutoModelForSequenceClassification.from_config(config)


def plain_write(files: list[tuple[bytes, str]], folder: Path) -> None:
    """The floor: each file's bytes written once, sequentially, then fsynced."""
    folder.mkdir()
    for data, name in files:
        with open(folder / name, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def drop_dirty_pages() -> None:
    os.sync()  # both contenders start with nothing left to flush from the previous one


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=128100)
    parser.add_argument("--repeats", type=int, default=8)  # this VM has occasional 3x outliers: median of 8
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp folder)")
    args = parser.parse_args()

    from accelerate import Accelerator

    from trainer.checkpoint import save_fold_model

    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(build_model(args.hidden, args.layers, args.vocab))
    root = Path(tempfile.mkdtemp(prefix="bench_ckpt_", dir=args.dir))
    ours, plain = [], []
    try:
        files = None
        for i in range(args.repeats + 1):  # round 0 warms up both (imports, allocator, page cache)
            # alternate who goes first, so neither always inherits the other's background writeback
            order = ("ours", "plain") if i % 2 else ("plain", "ours")
            for who in order:
                if who == "plain" and files is None:
                    continue
                drop_dirty_pages()
                t0 = time.perf_counter()
                if who == "ours":
                    save_fold_model(
                        accelerator, model, None, root / "ours", trainer_state={},
                        metric={"name": "f1_macro", "value": 0.5}, step=1, fold=0,
                    )  # fmt: skip
                else:
                    plain_write(files, root / "plain")
                elapsed = time.perf_counter() - t0
                if i > 0:
                    (ours if who == "ours" else plain).append(elapsed)
                if who == "ours" and files is None:
                    files = [
                        (p.read_bytes(), p.name) for p in sorted((root / "ours").iterdir()) if p.is_file()
                    ]
                shutil.rmtree(root / who)
        size = sum(len(d) for d, _ in files)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    best_ours, best_plain = statistics.median(ours), statistics.median(plain)
    mb = size / 1e6
    print(f"checkpoint bytes: {mb:.1f} MB ({len(files)} files), repeats: {args.repeats}, dir: {root.parent}")
    print(
        f"save_fold_model (commit protocol): {best_ours:.3f} s (median)  {mb / best_ours:8.1f} MB/s   all: {[round(t, 3) for t in ours]}"
    )
    print(
        f"plain write + fsync              : {best_plain:.3f} s (median)  {mb / best_plain:8.1f} MB/s   all: {[round(t, 3) for t in plain]}"
    )
    print(f"throughput ratio ours/plain: {best_plain / best_ours:.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
