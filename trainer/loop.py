"""The K-fold training loop: one Accelerator for every fold, resumable exactly from step checkpoints.

Shape of accelerate's ``examples/by_feature/cross_validation.py``: model, optimizer and scheduler are built
inside the fold loop, prepared, trained inside ``accelerator.accumulate``, evaluated with
``gather_for_metrics`` and released with ``free_memory``. What a resume needs beyond ``save_state``
(model, optimizer, scheduler, loss scaler, RNG of every rank) is the position in the data, which the
seeded sampler makes a pure function of (seed, fold, epoch) plus the number of consumed batches.
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainer import demo, evaluate, outputs
from trainer.checkpoint import StepCheckpointer, save_fold_model
from trainer.config import Config
from trainer.console import StepLog, auto_log_every, make_console, quiet_libraries
from trainer.cpu_threads import configure_cpu_threads
from trainer.data import EncodedDataset, encode, make_loaders
from trainer.disk_guard import (
    DiskGuard,
    estimate_model_bytes,
    estimate_step_bytes,
    parameter_count,
    run_json_error,
)
from trainer.distributed import main_decides
from trainer.engine_switch import load_from_deepspeed, load_from_plain
from trainer.folds import FOLDS_FILE, load_or_create, read_folds
from trainer.layout import current_layout
from trainer.modeling import (
    build_optimizer,
    compile_blocks,
    deepspeed_config,
    fill_deepspeed_auto,
    load_model,
    load_tokenizer,
    reset_zero3_trace,
)
from trainer.plan import RunPlan as Plan
from trainer.universal import (
    FROM_DEEPSPEED,
    FROM_PLAIN,
    UNIVERSAL,
    enable_universal_load,
    keep_global_batch,
    load_universal,
    needs_universal,
)

BEST_VALID_FILE = "best_valid.csv"  # beside the step checkpoints: predictions of the fold's best model
# Test seam, and only that: DeepSpeed's CPU accelerator refuses fp16; the fp16 loss-scaler path can run
# on CPU when this is set (tests/e2e). Never set it for real training.
ALLOW_CPU_FP16_ENV = "CKPT_TUI_TEST_ALLOW_CPU_FP16"


@dataclass
class FoldState:
    """Everything besides save_state that a resume needs; saved as train_state.json in each checkpoint."""

    fold: int
    global_step: int = 0
    epoch: int = 0
    batches_consumed_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    patience_left: int = 0
    last_eval_step: int | None = None
    skipped_steps: int = 0
    stopped_early: bool = False
    # Throughput, over all ranks: samples and (padded) tokens trained on, seconds spent in training
    # batches (data loading included; evaluation and checkpointing not).
    train_samples: int = 0
    train_tokens: int = 0
    train_seconds: float = 0.0
    metric_name: str = "f1_macro"
    log_history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FoldState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class FoldRun:
    """The prepared objects of one fold."""

    model: Any
    optimizer: Any
    scheduler: Any
    train_loader: Any
    valid_loader: Any
    sampler: Any
    steps_per_epoch: int
    batches_per_epoch: int


# ------------------------------------------------------------------------------------------- set-up
def make_accelerator(cfg: Config):
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    from trainer.distributed import process_group_handlers
    from trainer.modeling import enable_tf32

    enable_tf32(cfg.train.tf32)
    if os.environ.get(ALLOW_CPU_FP16_ENV) == "1":
        from deepspeed.accelerator import get_accelerator

        type(get_accelerator()).is_fp16_supported = lambda self: True
    # step_scheduler_with_optimizer=False: the scheduler steps once per optimizer step on every world size
    # (accelerate would otherwise step it num_processes times), and not at all on a skipped fp16 step.
    return Accelerator(
        gradient_accumulation_steps=cfg.train.grad_accum,
        step_scheduler_with_optimizer=False,
        kwargs_handlers=process_group_handlers(cfg.run.dist_timeout_s),
        # batches come from pinned memory on a GPU (data.loader_options): copy them asynchronously
        dataloader_config=DataLoaderConfiguration(non_blocking=torch.cuda.is_available()),
    )


def train(cfg: Config, plan: Plan) -> dict[str, Any] | None:
    """Train every fold of the plan; returns cv.json's object (on the main process)."""
    threads = configure_cpu_threads(cfg.train.cpu_threads)
    # Requeued on another world size: keep the global batch by adjusting grad_accum (trainer/universal.py).
    # Read before any process group exists, by every process; run.json keeps the config as given (its hash
    # decides the automatic resume) and the global batch trained with.
    asked = cfg
    previous = outputs.read_run(cfg.run.run_dir()) if plan.mode == "resume" else None
    cfg, batch_note = keep_global_batch(cfg, previous, int(os.environ.get("WORLD_SIZE", "1")))
    accelerator = make_accelerator(cfg)
    quiet_libraries(accelerator.is_main_process)
    console = make_console(accelerator.is_main_process)
    if threads:
        console.print(threads, highlight=False)
    run_dir = cfg.run.run_dir()
    main = accelerator.is_main_process
    if main and plan.mode == "overwrite" and run_dir.exists():
        shutil.rmtree(run_dir)
    if cfg.model.is_demo():
        with accelerator.main_process_first():
            if main:
                demo.materialize(Path(cfg.run.output_dir))
    record: dict[str, Any] = {}
    lock = outputs.LockHeartbeat(run_dir)
    if main:
        for notice in [*plan.notices, *([batch_note] if batch_note else [])]:
            console.print(notice)
        run_dir.mkdir(parents=True, exist_ok=True)
        lock.start()
        record = outputs.new_run_record(
            asked,
            world_size=accelerator.num_processes,
            mixed_precision=str(accelerator.mixed_precision),
            deepspeed_config=deepspeed_config(accelerator),
            previous=previous,  # None unless resuming: a new run has none, an overwritten one was removed
        )
        record["global_batch"] = cfg.train.batch_size * cfg.train.grad_accum * accelerator.num_processes
        outputs.update_run(run_dir, record)
        load_or_create(
            run_dir,
            plan.table.ids,
            plan.table.label_ids(),
            cfg.folds.num_folds,
            cfg.folds.seed,
            plan.table.frame[cfg.data.group_column].to_numpy() if cfg.data.group_column else None,
        )
    fold_of_row, done = main_decides(
        accelerator,
        lambda: (
            read_folds(run_dir / FOLDS_FILE, len(plan.table.frame), cfg.folds.num_folds),
            set(outputs.read_run(run_dir)["folds_done"]),
        ),
    )
    tokenizer = load_tokenizer(plan.model_dir)
    # Every fold trains on a subset of the same rows: tokenize them once, on every rank at once.
    encoded = encode(plan.table, cfg, tokenizer, np.arange(len(plan.table.frame)))
    cv = None
    try:
        for fold in cfg.folds.to_train():
            if fold in done:
                console.print(f"fold {fold}: already complete, skipped")
                continue
            state = train_fold(accelerator, cfg, plan, tokenizer, fold_of_row, fold, console, encoded)
            stats = release_fold(accelerator, state)
            if stats["peak_gpu_memory_bytes"] is not None:
                console.print(
                    f"fold {fold}: peak GPU memory {stats['peak_gpu_memory_bytes'] / 2**30:.2f} GiB, "
                    f"{stats['gpu_memory_left_bytes'] / 2**30:.2f} GiB left after release"
                )
            if main:
                done.add(fold)
                record.setdefault("fold_stats", {})[str(fold)] = stats
                outputs.update_run(run_dir, record, folds_done=sorted(done))
                cv = write_cv(run_dir, cfg, plan, sorted(done))
        if main:
            cv = write_cv(run_dir, cfg, plan, sorted(done))
            complete = set(cfg.folds.to_train()) <= done
            outputs.update_run(run_dir, record, status="complete" if complete else "running")
            if cv is not None:
                console.print(
                    f"CV {cfg.train.metric}: oof {cv['oof'][cfg.train.metric]:.4f}, "
                    f"mean {cv['mean'][cfg.train.metric]:.4f} ± {cv['std'][cfg.train.metric]:.4f}"
                )
    except Exception as e:
        if main:
            outputs.update_run(run_dir, record, status="failed", error=run_json_error(e))
        raise
    finally:
        if main:
            lock.stop()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return cv


def release_fold(accelerator, state: FoldState) -> dict[str, Any]:
    """Free what the finished fold left behind, so the next one starts from an empty GPU; its figures.

    Called after ``train_fold`` has returned, so that its frame (the prepared model, optimizer, loaders,
    evaluator) is gone. DeepSpeed's engine and the model hold reference cycles, so only a collection frees
    them, and only then can ``empty_cache`` give the memory back.
    """
    import torch

    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    accelerator.free_memory()  # destroys the DeepSpeed engine, drops accelerate's own references
    _forget_zero3_references()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return {
        "optimizer_steps": state.global_step,
        "skipped_steps": state.skipped_steps,
        "train_samples": state.train_samples,
        "train_tokens": state.train_tokens,
        "train_seconds": round(state.train_seconds, 3),
        "peak_gpu_memory_bytes": peak,
        "gpu_memory_left_bytes": torch.cuda.memory_allocated() if torch.cuda.is_available() else None,
    }


def _forget_zero3_references() -> None:
    """DeepSpeed 0.19.8's ZeRO-3 keeps every engine's model alive after ``destroy()``: it pushes the
    model onto a module-level stack when it installs its hooks and never pops it
    (runtime/zero/parameter_offload.py), and a class-level lru_cache on a coordinator method keys on
    (coordinator, submodule) (runtime/zero/partitioned_param_coordinator.py). Each fold's parameter
    partitions would stay on the GPU. Between folds no forward pass runs, so both can be emptied."""
    if "deepspeed" not in sys.modules:  # never imported: no ZeRO-3 state, and no 3 s import to pay here
        return
    try:
        from deepspeed.runtime.zero import parameter_offload, partitioned_param_coordinator
    except ImportError:
        return
    stack = getattr(parameter_offload, "FWD_MODULE_STACK", None)
    if isinstance(stack, list):
        stack.clear()
    coordinator = getattr(partitioned_param_coordinator, "PartitionedParameterCoordinator", None)
    method = getattr(coordinator, "_PartitionedParameterCoordinator__params_to_release", None)
    # The cached function sits inside DeepSpeed's NVTX wrapper (no functools.wraps), so look in its closure.
    for candidate in [method, *(c.cell_contents for c in getattr(method, "__closure__", None) or ())]:
        if callable(getattr(candidate, "cache_clear", None)):
            candidate.cache_clear()


def write_cv(run_dir: Path, cfg: Config, plan: Plan, folds: list[int]) -> dict[str, Any] | None:
    frames, best_steps = {}, {}
    for k in folds:
        path = outputs.valid_df_path(run_dir, k)
        if path.exists():
            frames[k] = pd.read_csv(path)
            best_steps[k] = _best_step_of(outputs.fold_model_dir(run_dir, cfg, k))
    if not frames:
        return None
    cv, oof = evaluate.cv_summary(frames, best_steps, plan.table.labels, cfg.train.metric)
    outputs.write_cv(run_dir, cv, oof)
    return cv


def _best_step_of(fold_dir: Path) -> int | None:
    import json

    try:
        state = json.loads((fold_dir / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    step = state.get("best_global_step")
    return int(step) if isinstance(step, int) else None


# ------------------------------------------------------------------------------------------ one fold
def prepare_fold(
    accelerator, cfg: Config, plan: Plan, tokenizer, fold_of_row: np.ndarray, fold: int,
    encoded: EncodedDataset | None = None,
) -> FoldRun:  # fmt: skip
    """``encoded``: every row of the table tokenized (tokenized here when not given)."""
    from accelerate.utils import set_seed

    if encoded is None:
        encoded = encode(plan.table, cfg, tokenizer, np.arange(len(plan.table.frame)))
    # The fold, not the history, decides the initial weights: fold 3 is the same after a resume.
    set_seed(cfg.train.seed + fold)
    train_ds = encoded.subset(np.flatnonzero(fold_of_row != fold))
    valid_ds = encoded.subset(np.flatnonzero(fold_of_row == fold))
    train_dl, sampler, valid_dl = make_loaders(
        train_ds, valid_ds, tokenizer, cfg, fold, accelerator.num_processes
    )
    model = load_model(plan.model_dir, plan.table.labels, cfg)

    # accelerate hands each process every num_processes-th batch, padding with repeats to even lengths.
    batches = math.ceil(len(train_dl) / accelerator.num_processes)
    grad_accum = accelerator.gradient_accumulation_steps
    steps_per_epoch = math.ceil(batches / grad_accum)
    optimizer, scheduler = build_optimizer(accelerator, model, cfg, steps_per_epoch * cfg.train.epochs)
    fill_deepspeed_auto(accelerator, cfg)
    model, optimizer, train_dl, valid_dl, scheduler = accelerator.prepare(
        model, optimizer, train_dl, valid_dl, scheduler
    )
    compile_blocks(accelerator.unwrap_model(model), cfg.train.compile)
    # Recount after prepare: DeepSpeed may impose its own accumulation, and sharding sets the length.
    if len(train_dl) != batches or accelerator.gradient_accumulation_steps != grad_accum:
        raise RuntimeError(
            f"step count changed by prepare ({batches} batches x accumulation {grad_accum} expected, got "
            f"{len(train_dl)} x {accelerator.gradient_accumulation_steps}); make train.grad_accum match "
            "gradient_accumulation_steps of the DeepSpeed config"
        )
    return FoldRun(model, optimizer, scheduler, train_dl, valid_dl, sampler, steps_per_epoch, batches)


def train_fold(
    accelerator, cfg: Config, plan: Plan, tokenizer, fold_of_row: np.ndarray, fold: int, console,
    encoded: EncodedDataset | None = None,
) -> FoldState:  # fmt: skip
    """Train one fold. Holds the only references to its model and engine: call ``release_fold`` after."""
    from accelerate import skip_first_batches

    run_dir = cfg.run.run_dir()
    guard = DiskGuard(min_free_bytes=int(cfg.train.min_free_gb * 1e9))
    checkpointer = StepCheckpointer(
        accelerator, run_dir, fold, cfg.train.keep_last, guard=guard, batch=_batch(cfg)
    )
    latest = checkpointer.latest()
    # Another world size (same ZeRO stage, same global batch) loads through DeepSpeed's universal form,
    # which the engine must know about when it is built (trainer/universal.py).
    mode = (
        main_decides(accelerator, lambda: needs_universal(*latest, current_layout(accelerator), _batch(cfg)))
        if latest is not None
        else None
    )  # DeepSpeed <-> no DeepSpeed: trainer/engine_switch.py
    universal = mode == UNIVERSAL
    if universal:
        enable_universal_load(accelerator, True)
    try:
        fr = prepare_fold(accelerator, cfg, plan, tokenizer, fold_of_row, fold, encoded)
    finally:
        if universal:
            enable_universal_load(accelerator, False)
    params, trainable, itemsize = parameter_count(accelerator.unwrap_model(fr.model))
    checkpointer.estimate_bytes = estimate_step_bytes(params, trainable, itemsize)
    state = FoldState(fold=fold, patience_left=cfg.train.patience, metric_name=cfg.train.metric)
    if mode is not None:
        load, how = {
            UNIVERSAL: (load_universal, "on another world size through DeepSpeed's universal checkpoint"),
            FROM_DEEPSPEED: (load_from_deepspeed, "written under DeepSpeed, without DeepSpeed"),
            FROM_PLAIN: (load_from_plain, "written without DeepSpeed, under DeepSpeed"),
        }[mode]
        loaded, adam_step = load(accelerator, fr, latest[0], latest[1], cfg, fold)
        state = FoldState.from_dict(loaded)
        console.print(
            f"fold {fold}: resumed from {latest[0].name} {how} (Adam step {adam_step:.0f}, "
            f"epoch {state.epoch}, {state.batches_consumed_in_epoch} batches into it)"
        )
    elif latest is not None:
        state = FoldState.from_dict(checkpointer.load(latest[0]))
        reset_zero3_trace(fr.model)
        console.print(
            f"fold {fold}: resumed from {latest[0].name} (epoch {state.epoch}, "
            f"{state.batches_consumed_in_epoch} batches into it)"
        )
    total_steps = fr.steps_per_epoch * cfg.train.epochs
    log_every = cfg.train.log_every or auto_log_every(fr.steps_per_epoch)
    log = StepLog(console, fold, total_steps, log_every, done_steps=state.global_step)
    evaluator = _Evaluator(accelerator, cfg, plan, tokenizer, fr, fold, checkpointer.folder, log.print)
    evaluator.guard, evaluator.estimate_bytes = guard, estimate_model_bytes(params, itemsize)
    samples_per_step = (
        cfg.train.batch_size * accelerator.gradient_accumulation_steps * accelerator.num_processes
    )
    started, first_step = time.perf_counter(), state.global_step

    with log:
        for epoch in range(state.epoch, cfg.train.epochs):
            if state.stopped_early:
                break
            fr.sampler.set_epoch(epoch)
            fr.train_loader.set_epoch(epoch)
            loader = fr.train_loader
            if state.batches_consumed_in_epoch:
                loader = skip_first_batches(fr.train_loader, state.batches_consumed_in_epoch)
                loader.set_epoch(epoch)
            fr.model.train()
            mark = time.perf_counter()
            for batch in loader:
                batch.pop("row")
                step_done, loss, grad_norm = _train_micro_batch(accelerator, cfg, fr, batch, state)
                state.batches_consumed_in_epoch += 1
                state.train_samples += batch["input_ids"].shape[0] * accelerator.num_processes
                state.train_tokens += batch["input_ids"].numel() * accelerator.num_processes
                now = time.perf_counter()  # float(loss) above waited for the GPU
                state.train_seconds, mark = state.train_seconds + now - mark, now
                log.add_loss(loss)
                if not step_done:
                    continue
                state.global_step += 1
                lr = float(fr.scheduler.get_last_lr()[0])
                state.log_history.append(
                    log.step(state.global_step, epoch_float(state, fr), lr, grad_norm, samples_per_step,
                             state.skipped_steps)
                )  # fmt: skip
                if cfg.train.eval_every and state.global_step % cfg.train.eval_every == 0:
                    evaluator.run(state, epoch_float(state, fr))
                if cfg.train.save_every and state.global_step % cfg.train.save_every == 0:
                    checkpointer.save(state.global_step, asdict(state), state.best_step)
                mark = time.perf_counter()
                if state.stopped_early:
                    break
            if state.stopped_early:
                break
            state.epoch, state.batches_consumed_in_epoch = epoch + 1, 0
            if not cfg.train.eval_every:
                evaluator.run(state, float(state.epoch))
        if state.last_eval_step != state.global_step and not state.stopped_early:
            evaluator.run(state, epoch_float(state, fr))  # the steps after the last periodic evaluation
    if accelerator.is_main_process:
        best = Path(checkpointer.folder) / BEST_VALID_FILE
        outputs.write_csv_atomic(outputs.valid_df_path(run_dir, fold), pd.read_csv(best))
    seconds = time.perf_counter() - started
    rate = (state.global_step - first_step) * samples_per_step / max(seconds, 1e-9)
    log.print(
        f"fold {fold}: best {cfg.train.metric} {state.best_metric:.4f} at step {state.best_step}; "
        f"{state.global_step} steps ({seconds:.1f} s, {rate:.0f} samples/s with evaluation), "
        f"{state.skipped_steps} skipped (fp16 overflow)"
    )
    return state


def _batch(cfg: Config) -> tuple[int, int]:
    return cfg.train.batch_size, cfg.train.grad_accum


def epoch_float(state: FoldState, fr: FoldRun) -> float:
    return round(state.epoch + state.batches_consumed_in_epoch / max(fr.batches_per_epoch, 1), 4)


def _train_micro_batch(accelerator, cfg: Config, fr: FoldRun, batch, state: FoldState):
    """Forward/backward of one micro-batch; (optimizer step happened, loss, grad norm)."""
    grad_norm = None
    with accelerator.accumulate(fr.model):
        loss = fr.model(**batch).loss
        accelerator.backward(loss)
        stepping = accelerator.sync_gradients
        if stepping and cfg.train.max_grad_norm > 0:
            grad_norm = accelerator.clip_grad_norm_(fr.model.parameters(), cfg.train.max_grad_norm)
        fr.optimizer.step()
        if stepping:
            if accelerator.optimizer_step_was_skipped:
                state.skipped_steps += 1  # fp16 overflow: weights and schedule unchanged
            else:
                fr.scheduler.step()
        fr.optimizer.zero_grad()
    if grad_norm is not None:
        grad_norm = float(grad_norm)
    return stepping, float(loss.detach().float()), grad_norm


class _Evaluator:
    """Evaluate, track the best, save the best fold model and its predictions, decide early stopping."""

    def __init__(
        self, accelerator, cfg: Config, plan: Plan, tokenizer, fr: FoldRun, fold: int, ckpt_dir: Path, say
    ):
        self.acc, self.cfg, self.plan, self.tokenizer, self.fr, self.fold, self.say = (
            accelerator,
            cfg,
            plan,
            tokenizer,
            fr,
            fold,
            say,
        )
        self.best_valid = Path(ckpt_dir) / BEST_VALID_FILE
        self.guard: DiskGuard | None = None  # set by train_fold, with the fold model's size estimate
        self.estimate_bytes = 0
        self.fold_dir = outputs.fold_model_dir(cfg.run.run_dir(), cfg, fold)

    def run(self, state: FoldState, epoch: float) -> None:
        cfg = self.cfg
        reset_zero3_trace(self.fr.model)  # ZeRO-3: evaluation passes are not the training pass it traced
        rows, probs = evaluate.predict(self.acc, self.fr.model, self.fr.valid_loader)
        scores = evaluate.compute(self.plan.table.label_ids()[rows], probs)
        state.last_eval_step = state.global_step
        state.log_history.append(
            {"step": state.global_step, "epoch": epoch, **{f"eval_{k}": v for k, v in scores.items()}}
        )
        value = scores[cfg.train.metric]
        improved = evaluate.is_better(value, state.best_metric, cfg.train.mode())
        if improved:
            state.best_metric, state.best_step, state.patience_left = (
                value,
                state.global_step,
                cfg.train.patience,
            )
            self._save_best(state, epoch, value, rows, probs)
        else:
            state.patience_left -= 1
            state.stopped_early = cfg.train.patience > 0 and state.patience_left <= 0
        reset_zero3_trace(self.fr.model)  # and training resumes with a trace of its own
        mark = " *" if improved else ""
        self.say(
            f"fold {self.fold} step {state.global_step} eval: "
            + " ".join(f"{k} {v:.4f}" for k, v in scores.items())
            + mark
            + (" (early stop)" if state.stopped_early else "")
        )

    def _save_best(self, state: FoldState, epoch: float, value: float, rows, probs) -> None:
        trainer_state = {
            "global_step": state.global_step,
            "epoch": epoch,
            "log_history": list(state.log_history),
            "skipped_steps": state.skipped_steps,
        }
        save_fold_model(
            self.acc,
            self.fr.model,
            self.tokenizer,
            self.fold_dir,
            trainer_state=trainer_state,
            metric={"name": self.cfg.train.metric, "value": value, "step": state.global_step},
            step=state.global_step,
            fold=self.fold,
            lora=self.cfg.lora.enabled,
            guard=self.guard,
            estimate_bytes=self.estimate_bytes,
        )
        if self.acc.is_main_process:
            frame = evaluate.valid_frame(self.plan.table, self.cfg, rows, probs)
            outputs.write_csv_atomic(self.best_valid, frame)
        self.acc.wait_for_everyone()
