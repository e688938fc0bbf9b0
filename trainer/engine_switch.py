"""Resume a step checkpoint across engines: written under DeepSpeed ZeRO and resumed without DeepSpeed
(plain accelerate), or the other way (docs/TRAINER.md, "Requeued on another node count").

DeepSpeed -> plain: rank 0 converts the ZeRO shards to DeepSpeed's universal form (``ds_to_universal``:
per parameter fp32 weights, Adam ``exp_avg``/``exp_avg_sq`` and ``step``; trainer/universal.py), and every
rank copies each trainable parameter's fp32 weight into the model and its moments and step into the torch
AdamW state of that parameter. Plain -> DeepSpeed ZeRO-1/2/3: the plain checkpoint's weights and
``optimizer.bin`` (a torch AdamW state_dict, parameters numbered in the order of
``modeling.param_group_names``) are written into the engine's fp32 partitions with DeepSpeed's own
fragment API (``safe_set_full_fp32_param`` / ``safe_set_full_optimizer_state``) after Adam's state (and
step) is created on every flat partition, and the model's weights are refreshed from them
(``update_lp_params``; under ZeRO-3 the partitions, as DeepSpeed's universal load does). Frozen parameters
keep the weights the model was built with under ZeRO-3 (the same base model).
The scheduler comes from ``scheduler.bin`` either way; data position and RNG as for another world size.
"""

from __future__ import annotations

from pathlib import Path

from trainer.layout import ResumeLayoutError
from trainer.modeling import param_group_names
from trainer.universal import (
    adam_step,
    carry_position,
    load_scheduler,
    release_gathered,
    torch_optimizer,
    universal_copy,
)
from tui.core.resume_layout import DS_TAG_DIR, UNIVERSAL_DIR

PLAIN_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # accelerate's save_state, safetensors first
PLAIN_OPTIMIZER = "optimizer.bin"


def _tensor(saved):
    """A universal fragment file holds {"param": tensor, "cat_dim": ...}; step.pt a bare tensor."""
    return saved["param"] if isinstance(saved, dict) else saved


def _step_of(zero: Path, name: str, common: dict) -> float:
    """Adam's step of one parameter: its ``step.pt`` (ZeRO-1/2), else the common optimizer state
    (ZeRO-3 keeps one step for all, as DeepSpeed's own universal load reads it)."""
    import torch

    if (zero / name / "step.pt").is_file():
        return float(_tensor(torch.load(zero / name / "step.pt", map_location="cpu", weights_only=True)))
    if "step" not in common:  # read once: under ZeRO-3 it holds the flat fp32 groups too
        # The trainer's own checkpoint (the scheduler is loaded the same way); it holds DeepSpeed objects.
        saved = torch.load(zero / "optimizer_state.pt", map_location="cpu", weights_only=False)
        common["step"] = float(next(iter(saved["optimizer_state_dict"]["state"].values()))["step"])
    return common["step"]


def load_from_deepspeed(accelerator, fr, step_dir: Path, state: dict, cfg, fold: int):
    """ZeRO shards of ``step_dir`` into this run without DeepSpeed. ALL ranks call this. Returns (train
    state on this layout, Adam's step)."""
    import torch

    with universal_copy(accelerator, step_dir) as folder:
        zero = folder / DS_TAG_DIR / UNIVERSAL_DIR
        model, optimizer = accelerator.unwrap_model(fr.model), torch_optimizer(fr.optimizer)
        group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        common: dict = {}
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue  # frozen: as the model was built (DeepSpeed keeps no optimizer state for it)
            if not (zero / name).is_dir():
                raise ResumeLayoutError(
                    f"{step_dir}: its ZeRO shards hold no parameter {name}; is it this model?"
                )

            def part(key: str, name: str = name):
                return _tensor(torch.load(zero / name / f"{key}.pt", map_location="cpu", weights_only=True))

            with torch.no_grad():
                param.copy_(part("fp32").reshape(param.shape))
            group = group_of[id(param)]
            on = param.device if group.get("fused") or group.get("capturable") else torch.device("cpu")
            optimizer.state[param] = {
                "step": torch.tensor(_step_of(zero, name, common), dtype=torch.float32, device=on),
                "exp_avg": part("exp_avg").reshape(param.shape).to(param),
                "exp_avg_sq": part("exp_avg_sq").reshape(param.shape).to(param),
            }
        load_scheduler(fr, step_dir)
    return carry_position(accelerator, step_dir, state, cfg, fold), adam_step(fr.optimizer)


def _plain_weights(step_dir: Path) -> dict:
    import torch

    for name in PLAIN_WEIGHTS:
        path = step_dir / name
        if path.is_file():
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                weights = load_file(str(path))
            else:
                weights = torch.load(path, map_location="cpu", weights_only=True)
            return {k.removeprefix("module."): v for k, v in weights.items()}
    raise ResumeLayoutError(f"{step_dir}: no {' or '.join(PLAIN_WEIGHTS)} to resume from")


def load_from_plain(accelerator, fr, step_dir: Path, state: dict, cfg, fold: int):
    """A checkpoint written without DeepSpeed into this ZeRO-1/2 engine. ALL ranks call this. Returns
    (train state on this layout, Adam's step)."""
    import torch
    from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

    engine, zero = fr.model, fr.model.optimizer
    stage3 = hasattr(zero, "fp32_partitioned_groups_flat")
    if not stage3 and not hasattr(zero, "single_partition_of_fp32_groups"):
        raise ResumeLayoutError(
            f"{step_dir}: written without DeepSpeed; this engine ({type(zero).__name__}) cannot take its "
            "optimizer state: relaunch without DeepSpeed or under ZeRO-1/2/3"
        )
    weights = _plain_weights(step_dir)
    saved = torch.load(step_dir / PLAIN_OPTIMIZER, map_location="cpu", weights_only=True)
    names = [n for group in param_group_names(engine.module) for n in group]
    numbers = [i for group in saved["param_groups"] for i in group["params"]]
    if len(numbers) != len(names) or any(n not in weights for n in names):
        raise ResumeLayoutError(
            f"{step_dir}: its optimizer holds {len(numbers)} parameters, this model trains {len(names)}; "
            "is it this model?"
        )
    moments = {name: saved["state"].get(i, {}) for name, i in zip(names, numbers, strict=True)}
    steps = [float(m["step"]) for m in moments.values() if "step" in m]
    _create_adam_state(zero, max(steps) if steps else 0.0, stage3)
    params = dict(engine.module.named_parameters())
    for name in names:
        safe_set_full_fp32_param(params[name], weights[name].float())
        for key in ("exp_avg", "exp_avg_sq"):
            if key in moments[name]:
                safe_set_full_optimizer_state(params[name], moments[name][key].float(), key)
    if stage3:
        _refresh_zero3_partitions(zero)
        release_gathered(engine)
    else:
        with torch.no_grad():  # frozen parameters are whole on every rank under ZeRO-1/2
            for name, param in params.items():
                if not param.requires_grad and name in weights:
                    param.copy_(weights[name])
        zero.update_lp_params()  # the model's weights from the fp32 partitions just written
    load_scheduler(fr, step_dir)
    return carry_position(accelerator, step_dir, state, cfg, fold), adam_step(fr.optimizer)


def _create_adam_state(zero, step: float, stage3: bool) -> None:
    """torch Adam creates its state at the first step: create it now (zeros, and ``step``) on every flat
    fp32 partition, so that DeepSpeed's fragment API has somewhere to write."""
    import torch

    flats = zero.fp32_partitioned_groups_flat if stage3 else zero.single_partition_of_fp32_groups
    for i, flat in enumerate(flats):
        slot = zero.optimizer.state[flat]
        slot.setdefault("exp_avg", torch.zeros_like(flat))
        slot.setdefault("exp_avg_sq", torch.zeros_like(flat))
        slot["step"] = torch.tensor(step, dtype=torch.float32, device=flat.device)
        if not stage3:  # ZeRO-1/2 map each parameter's fragment onto the state once it exists
            for lp in zero.bit16_groups[i]:
                if getattr(lp, "_hp_mapping", None) is not None:
                    lp._hp_mapping.set_optim_state_fragment(flat, slot)


def _refresh_zero3_partitions(zero) -> None:
    """ZeRO-3: the parameters' partitions from the fp32 partitions just written (as DeepSpeed's own
    universal load does, stage3.load_hp_checkpoint_state_from_checkpoint_dir_stage3)."""
    for i, fp32 in enumerate(zero.fp32_partitioned_groups_flat):
        if fp32.numel() > 0:
            zero.fp16_partitioned_groups_flat[i].data.copy_(fp32.data)
    for i, flat in enumerate(zero.fp16_partitioned_groups_flat):
        parts = zero.fp16_partitioned_groups[i]
        for part, q in zip(parts, zero.unflatten(flat, parts), strict=True):
            part.data = q.data
