"""Resume a DeepSpeed step checkpoint on another number of processes, through DeepSpeed's universal
checkpoint (docs/TRAINER.md, "Requeued on another node count").

``save_state`` under ZeRO writes per-rank partitions that load only on the world size that wrote them.
When the world size changed (same ZeRO stage, same global batch), rank 0 converts the checkpoint's
``pytorch_model/`` tag folder with ``deepspeed.checkpoint.ds_to_universal`` (per-parameter fp32 weights,
Adam ``exp_avg``/``exp_avg_sq`` and ``step``) into a temp folder beside it, the engine is built with
``checkpoint.load_universal`` and loads it with ``load_checkpoint`` on every rank, the scheduler comes from
``scheduler.bin``, and the temp folder is removed. What is not carried is re-derived: the data position is
the samples consumed in the epoch mapped onto the new per-rank batch count (the seeded sampler's order
depends only on the global batch), and the RNG streams are re-seeded from (seed, fold, step, rank). Same
data order and optimizer state; float-level differences from the uninterrupted run (reduction order).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

from trainer.distributed import main_decides
from trainer.layout import Layout, ResumeLayoutError, current_layout, layout_of, other_layout
from trainer.modeling import reset_zero3_trace
from tui.core.resume_layout import DS_TAG_DIR

SCHEDULER_FILE = "scheduler.bin"  # accelerate's save_state: the prepared scheduler's state_dict


def recorded_global_batch(previous: dict | None) -> int | None:
    """The run's global batch as its previous launch trained with it (run.json), None for a new run."""
    if not previous:
        return None
    if isinstance(previous.get("global_batch"), int):
        return previous["global_batch"]
    train = (previous.get("config") or {}).get("train") or {}
    parts = (train.get("batch_size"), train.get("grad_accum"), previous.get("world_size"))
    return parts[0] * parts[1] * parts[2] if all(isinstance(x, int) for x in parts) else None


def keep_global_batch(cfg, previous: dict | None, world_size: int):
    """(config to train with, one-line note or None): on another world size, ``grad_accum`` chosen so that
    ``batch_size x grad_accum x processes`` stays the run's global batch. ResumeLayoutError when no
    accumulation fits (then --train.batch_size / --train.grad_accum must say)."""
    wanted = recorded_global_batch(previous)
    bs, accum = cfg.train.batch_size, cfg.train.grad_accum
    train = ((previous or {}).get("config") or {}).get("train") or {}
    as_before = train.get("batch_size") == bs and train.get("grad_accum") == accum  # else the user chose
    if wanted is None or not as_before or bs * accum * world_size == wanted:
        return cfg, None
    if wanted % (bs * world_size):
        raise ResumeLayoutError(
            f"global batch {wanted} of this run cannot be kept on {world_size} process"
            f"{'es' if world_size != 1 else ''} with batch_size {bs}; give --train.batch_size and "
            "--train.grad_accum (and --resume)"
        )
    new = wanted // (bs * world_size)
    note = (
        f"{world_size} process{'es' if world_size != 1 else ''} now: train.grad_accum {accum} -> {new} keeps "
        f"the global batch of {wanted}"
    )
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, grad_accum=new)), note


def universal_temp(step_dir: Path) -> Path:
    """Where the universal form of ``step_dir`` is written for one load (a dot name: never a candidate)."""
    return step_dir.parent / f".universal_{step_dir.name}.tmp"


UNIVERSAL, FROM_DEEPSPEED, FROM_PLAIN = "universal", "from-deepspeed", "from-plain"


def needs_universal(step_dir: Path, state: dict, here: Layout, batch: tuple[int, int]) -> str | None:
    """How ``step_dir`` loads on this layout: None as it is; UNIVERSAL (another world size, same ZeRO
    stage); FROM_DEEPSPEED (ZeRO shards into a run without DeepSpeed) or FROM_PLAIN (a run without
    DeepSpeed into ZeRO; trainer/engine_switch.py). Raises ResumeLayoutError (one line) for what cannot
    be resumed here: another ZeRO stage, or a global batch that would
    change (``batch``: this launch's (batch_size, grad_accum))."""
    needed = layout_of(step_dir, state)
    if needed is None or needed.same_as(here):
        return None
    if needed.zero_stage and here.zero_stage is None:
        mode = FROM_DEEPSPEED
    elif needed.zero_stage is None and here.zero_stage in (1, 2, 3):
        mode = FROM_PLAIN
    elif (
        needed.zero_stage
        and here.zero_stage
        and Layout(1, needed.zero_stage).same_as(Layout(1, here.zero_stage))
    ):
        mode = UNIVERSAL
    else:
        alternative = (
            "(or DeepSpeed ZeRO on any count)"
            if needed.zero_stage is None
            else f"(or ZeRO-{needed.zero_stage}, or no DeepSpeed, on any count)"
        )
        raise other_layout(step_dir, needed, here, alternative)
    if not isinstance(state.get("batch_size"), int) or not isinstance(state.get("grad_accum"), int):
        return mode  # written before the batch was recorded: the run's config is trusted to keep it
    old_bs, old_accum = state["batch_size"], state["grad_accum"]
    old_global = old_bs * old_accum * needed.world_size
    new_global = batch[0] * batch[1] * here.world_size
    if new_global != old_global:
        fits = old_global % (batch[0] * here.world_size) == 0
        keep = (
            f"--train.grad_accum {old_global // (batch[0] * here.world_size)}"
            if fits
            else "--train.batch_size and --train.grad_accum"
        )
        raise ResumeLayoutError(
            f"{step_dir}: global batch {old_global} ({old_bs} x {old_accum} x {needed.world_size} processes) "
            f"would become {new_global} on {here.world_size} process{'es' if here.world_size != 1 else ''}; "
            f"keep it with {keep} (and --resume)"
        )
    return mode


def enable_universal_load(accelerator, on: bool) -> None:
    """DeepSpeed reads ``checkpoint.load_universal`` when the engine is built: set it before ``prepare``
    and clear it after, so the next fold's engine loads the ordinary way."""
    plugin = accelerator.state.deepspeed_plugin
    section = plugin.deepspeed_config.setdefault("checkpoint", {})
    if on:
        section["load_universal"] = True
    else:
        section.pop("load_universal", None)


def convert_to_universal(step_dir: Path) -> Path:
    """Rank 0: the universal form of ``step_dir``'s tag folder in a fresh temp folder."""
    from deepspeed.checkpoint import ds_to_universal

    out = universal_temp(step_dir)
    shutil.rmtree(out, ignore_errors=True)
    args = SimpleNamespace(
        input_folder=str(step_dir / DS_TAG_DIR), output_folder=str(out / DS_TAG_DIR),
        num_extract_workers=1, num_merge_workers=1, keep_temp_folder=False, strict=True,
        inject_missing_state=True,
    )  # fmt: skip
    stdout, sys.stdout = sys.stdout, sys.stderr  # its progress is not our console's
    try:
        ds_to_universal.main(args)
    finally:
        sys.stdout = stdout
    return out


def load_scheduler(fr, step_dir: Path) -> None:
    """The prepared scheduler's state from ``scheduler.bin`` (the universal form carries none)."""
    import torch

    fr.scheduler.scheduler.load_state_dict(torch.load(step_dir / SCHEDULER_FILE, weights_only=False))


def load_universal(accelerator, fr, step_dir: Path, state: dict, cfg, fold: int) -> tuple[dict, float | None]:
    """Load ``step_dir`` into the prepared fold ``fr`` on this (other) layout. ALL ranks call this.
    Returns the train state with the data position mapped onto this layout, and Adam's step count."""
    with universal_copy(accelerator, step_dir) as folder:
        fr.model.load_checkpoint(
            str(folder), tag=DS_TAG_DIR, load_optimizer_states=True, load_lr_scheduler_states=False,
        )  # fmt: skip
        release_gathered(fr.model)
        load_scheduler(fr, step_dir)
    return carry_position(accelerator, step_dir, state, cfg, fold), adam_step(fr.optimizer)


@contextmanager
def universal_copy(accelerator, step_dir: Path) -> Iterator[Path]:
    """The universal form of ``step_dir``'s ZeRO shards, converted by the main process, for the time of a
    load by ALL ranks; removed by the main process once every rank is done with it."""
    folder = main_decides(accelerator, lambda: convert_to_universal(step_dir))
    try:
        yield folder
    finally:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shutil.rmtree(folder, ignore_errors=True)


def carry_position(accelerator, step_dir: Path, state: dict, cfg, fold: int) -> dict:
    """The train state of ``step_dir`` with the data position mapped onto this launch's layout; the RNG
    streams re-seeded."""
    from accelerate.utils import set_seed

    needed, here = layout_of(step_dir, state), current_layout(accelerator)
    state = dict(state)
    # Per-rank micro-batches consumed in the epoch -> samples -> this layout's per-rank micro-batches.
    samples = int(state.get("batches_consumed_in_epoch", 0)) * needed.world_size
    state["batches_consumed_in_epoch"] = samples // here.world_size
    set_seed(cfg.train.seed + 1_000 * fold + int(state.get("global_step", 0)), device_specific=True)
    return state


def torch_optimizer(optimizer):
    """AcceleratedOptimizer -> (DeepSpeed's ZeRO optimizer ->) the torch Adam holding the state."""
    inner = getattr(optimizer, "optimizer", optimizer)
    return getattr(inner, "optimizer", inner)


def adam_step(optimizer) -> float | None:
    steps = [
        float(s["step"]) for s in getattr(torch_optimizer(optimizer), "state", {}).values() if "step" in s
    ]
    return max(steps) if steps else None


def release_gathered(engine) -> None:
    """ZeRO-3: loading the universal form leaves parameters gathered and the prefetch trace stale, and the
    next forward after an evaluation fails ("tracing error ... expected the next parameters"): release
    every parameter and start a fresh trace, as at the start of training."""
    offload = getattr(getattr(engine, "optimizer", None), "parameter_offload", None)
    if offload is None:
        return
    offload.get_param_coordinator().release_and_reset_all(engine.module)
    reset_zero3_trace(engine)
