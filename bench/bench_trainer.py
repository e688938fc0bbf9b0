"""Training throughput: our loop (trainer/loop.py) vs Hugging Face ``Trainer``, side by side, one run.

    python bench/bench_trainer.py [--hidden 256 --layers 4 --batch-size 32 --warmup 5 --steps 40]

Same for every contender: the model (a DeBERTa-v2 classifier built from a config with the demo's locally
trained tokenizer, identical initial weights), the rows (the embedded demo data, fold 0's training rows),
the tokenisation and the collator (dynamic padding), the batch size, fp32 on CPU, one process, AdamW,
linear warmup/decay, clipping at 1.0. Each contender runs in its own fresh Python process (no shared
accelerate singleton, allocator or thread-pool state), one after the other.

Only steady-state optimizer steps are timed: the clock starts when step ``--warmup`` has finished and
stops when step ``--warmup + --steps`` has, for both (model build, ``prepare``, data-loader start and
the first warm-up steps are excluded equally). Samples/s = steps x batch size / seconds.

Our side runs the loop's own functions: ``make_accelerator``, ``prepare_fold`` (model, AdamW decay
groups, scheduler, seeded sampler, accelerate.prepare) and, per micro-batch, ``_train_micro_batch`` plus
the per-step log line of ``_StepLog`` (rendered into memory), exactly what ``train_fold`` runs per step.
HF runs as shipped: default optimizer ``adamw_torch_fused`` (the fused AdamW our loop builds too) and
default logging every 500 steps. The box is shared: read the ratio, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NUM_FOLDS = 5
FOLD = 0


# ------------------------------------------------------------------------------------------- set-up
def make_inputs(workdir: Path, hidden: int, layers: int) -> tuple[Path, Path]:
    """(data CSV, model folder): the demo rows and a DeBERTa-v2 of the requested size, saved once."""
    import torch
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    from trainer import demo

    data = workdir / "data.csv"
    frame = demo.demo_dataframe()
    frame.to_csv(data, index=False)
    tokenizer = demo.train_tokenizer(frame["text"].tolist())
    labels = sorted(demo.CLASS_WEIGHTS)
    config = DebertaV2Config(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden, max_position_embeddings=128,
        relative_attention=True, position_buckets=32, max_relative_positions=64, pos_att_type=["p2c", "c2p"],
        pooler_hidden_size=hidden, pad_token_id=0, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={c: i for i, c in enumerate(labels)},
    )  # fmt: skip
    torch.manual_seed(0)
    model_dir = workdir / "model"
    DebertaV2ForSequenceClassification(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return data, model_dir


def make_config(args, workdir: Path):
    from trainer.config import Config, DataConfig, FoldConfig, ModelConfig, RunConfig, TrainConfig

    return Config(
        data=DataConfig(path=str(args.data), id_column="id"),
        model=ModelConfig(model_name_or_path=str(args.model)),
        train=TrainConfig(
            lr=2e-4, batch_size=args.batch_size, epochs=1000, warmup_steps=10, max_grad_norm=1.0,
            weight_decay=0.01, save_every=0, eval_every=0, seed=42,
        ),
        folds=FoldConfig(num_folds=NUM_FOLDS),
        run=RunConfig(output_dir=str(workdir / "runs"), run_name="bench"),
    )  # fmt: skip


def fold_of_row(n: int):
    import numpy as np

    return np.arange(n) % NUM_FOLDS  # the same rows for both; the split itself is not what is measured


# ---------------------------------------------------------------------------------------- contenders
def run_ours(args) -> dict:
    import io

    from rich.console import Console

    from trainer.loop import FoldState, _StepLog, _train_micro_batch, make_accelerator, prepare_fold
    from trainer.modeling import load_tokenizer
    from trainer.plan import make_plan

    workdir = Path(tempfile.mkdtemp(prefix="bench_ours_"))
    cfg = make_config(args, workdir)
    plan = make_plan(cfg)
    accelerator = make_accelerator(cfg)
    tokenizer = load_tokenizer(plan.model_dir)
    fr = prepare_fold(accelerator, cfg, plan, tokenizer, fold_of_row(len(plan.table.frame)), FOLD)
    state = FoldState(fold=FOLD, metric_name=cfg.train.metric)
    console = Console(file=io.StringIO(), width=120)  # the step log is rendered, just not shown
    log = _StepLog(accelerator, cfg, fr, FOLD, console, state)
    samples_per_step = cfg.train.batch_size * accelerator.gradient_accumulation_steps
    total = args.warmup + args.steps
    start = end = None
    fr.model.train()
    epoch = 0
    while end is None:  # train_fold's inner loop, without evaluation and checkpoints
        fr.sampler.set_epoch(epoch)
        fr.train_loader.set_epoch(epoch)
        for batch in fr.train_loader:
            batch.pop("row")
            step_done, loss, grad_norm = _train_micro_batch(accelerator, cfg, fr, batch, state)
            state.batches_consumed_in_epoch += 1
            log.add_loss(loss)
            if not step_done:
                continue
            state.global_step += 1
            log.step(epoch, grad_norm, samples_per_step)
            if state.global_step == args.warmup:
                start = time.perf_counter()
            if state.global_step == total:
                end = time.perf_counter()
                break
        epoch += 1
    return {
        "seconds": end - start,
        "optimizer": _describe_optimizer(fr.optimizer),
        "train_rows": len(fr.train_loader.dataset),
    }


def run_hf(args, optim: str | None) -> dict:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from trainer.data import encode
    from trainer.modeling import load_tokenizer
    from trainer.plan import make_plan

    workdir = Path(tempfile.mkdtemp(prefix="bench_hf_"))
    cfg = make_config(args, workdir)
    plan = make_plan(cfg)
    tokenizer = load_tokenizer(plan.model_dir)
    rows = (fold_of_row(len(plan.table.frame)) != FOLD).nonzero()[0]
    encoded = encode(plan.table, cfg, tokenizer, rows)  # the same tokenisation as our loop

    class WithoutRow(torch.utils.data.Dataset):  # our dataset carries the row index; HF's model must not
        def __len__(self):
            return len(encoded)

        def __getitem__(self, i):
            item = encoded[i]
            item.pop("row")
            return item

    class Clock(TrainerCallback):
        start = end = None

        def on_step_end(self, _args, state, control, **kwargs):
            if state.global_step == args.warmup:
                Clock.start = time.perf_counter()
            if state.global_step == args.warmup + args.steps:
                Clock.end = time.perf_counter()

    t = cfg.train
    extra = {"optim": optim} if optim else {}
    training_args = TrainingArguments(
        output_dir=str(workdir / "hf"), per_device_train_batch_size=t.batch_size,
        max_steps=args.warmup + args.steps, learning_rate=t.lr, weight_decay=t.weight_decay,
        warmup_steps=t.warmup_steps, lr_scheduler_type="linear", max_grad_norm=t.max_grad_norm,
        save_strategy="no", eval_strategy="no", report_to="none", use_cpu=True, seed=t.seed,
        disable_tqdm=True, **extra,
    )  # fmt: skip
    torch.manual_seed(t.seed)
    model = AutoModelForSequenceClassification.from_pretrained(str(plan.model_dir), local_files_only=True)
    trainer = Trainer(
        model=model, args=training_args, train_dataset=WithoutRow(),
        data_collator=DataCollatorWithPadding(tokenizer, return_tensors="pt"), callbacks=[Clock()],
    )  # fmt: skip
    trainer.train()
    return {
        "seconds": Clock.end - Clock.start,
        "optimizer": _describe_optimizer(trainer.optimizer),
        "train_rows": len(encoded),
    }


def _describe_optimizer(optimizer) -> str:
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps it
    flags = [k for k in ("fused", "foreach") if inner.defaults.get(k)]
    return type(inner).__name__ + (f" ({', '.join(flags)})" if flags else "")


# -------------------------------------------------------------------------------------------- driver
CONTENDERS = {
    "ours": "ours (trainer/loop.py)",
    "hf": "HF Trainer, as shipped",
}


def child(args) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if args.contender == "ours":
        result = run_ours(args)
    else:
        result = run_hf(args, None)
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5, help="optimizer steps run before the clock starts")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps timed")
    parser.add_argument("--contender", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        child(args)
        return

    with tempfile.TemporaryDirectory(prefix="bench_trainer_") as tmp:
        data, model = make_inputs(Path(tmp), args.hidden, args.layers)
        results = {}
        for name in CONTENDERS:
            cmd = [sys.executable, __file__, "--contender", name, "--data", str(data), "--model", str(model)]
            cmd += [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("hidden", "layers", "batch_size")]
            cmd += [f"--warmup={args.warmup}", f"--steps={args.steps}"]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if done.returncode != 0 or line is None:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            results[name] = json.loads(line[len("RESULT ") :])

    rate = {n: args.steps * args.batch_size / r["seconds"] for n, r in results.items()}
    rows = {r["train_rows"] for r in results.values()}
    print(
        f"Machine: {os.cpu_count()} CPUs ({_cpu_name()}), torch threads {_threads()}, no GPU. "
        f"DeBERTa-v2 hidden {args.hidden}, {args.layers} layers, fp32, 1 process, batch {args.batch_size}, "
        f"{args.steps} steps timed after {args.warmup} warm-up steps, {rows.pop()} training rows.\n"
    )
    print("| contender | optimizer | samples/s | ours / this |")
    print("| --- | --- | ---: | ---: |")
    for name, label in CONTENDERS.items():
        ratio = rate["ours"] / rate[name]
        print(f"| {label} | {results[name]['optimizer']} | {rate[name]:.1f} | {ratio:.2f} |")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
