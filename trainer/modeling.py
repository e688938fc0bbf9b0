"""Model, tokenizer, optimizer and scheduler for one fold.

Models load only from a local folder (``local_files_only=True``): a cluster job that silently downloads
is a job that fails at 3 a.m. when the hub is unreachable. When the DeepSpeed JSON defines its own
optimizer or scheduler, accelerate's DummyOptim/DummyScheduler stand in for ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.config import Config
from trainer.data import LabelMap


class ModelError(ValueError):
    """A model folder that cannot be used; one line."""


def check_model_dir(path: Path) -> None:
    """Cheap checks before any process group: the folder exists and looks like a HF model folder."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(
            f"{path}: model folder not found (model.model_name_or_path must be a local folder; "
            "nothing is downloaded)"
        )
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: no config.json, not a Hugging Face model folder")


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def check_compile_backend(name: str | None) -> None:
    """``train.compile`` names a backend torch.compile knows (checked before any process group)."""
    if name is None:
        return
    import torch._dynamo

    known = torch._dynamo.list_backends(exclude_tags=())
    if name not in known:
        raise ModelError(f"train.compile: unknown torch.compile backend {name!r} (none, {', '.join(known)})")


def enable_tf32(enabled: bool) -> None:
    """fp32 matmuls on TF32 tensor cores (Ampere and later): what bf16/fp16 runs still do in fp32 (the
    optimizer, the loss) and whole fp32 runs get ~8x the matmul rate. CUDA only; CPU results are unchanged."""
    import torch

    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high" if enabled else "highest")


def load_model(path: Path, labels: LabelMap, cfg: Config):
    """The classifier with this run's label maps in its config; LoRA adapters when enabled.

    Trainable weights are always fp32, whatever dtype the folder was saved in (transformers 5 loads the
    checkpoint's dtype by default): mixed precision is the launcher's business (autocast + loss scaling,
    or DeepSpeed's fp32 master copy); bf16 parameters under plain DDP would silently drop small updates,
    and fp16 ones fail in the GradScaler. Under ZeRO-3, DeepSpeed's partitioning at construction decides
    the dtype of the (sharded) parameters and keeps the fp32 master copy itself.
    """
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized classifier" is expected here, not news
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path),
            num_labels=labels.num_labels,
            id2label=labels.id2label(),
            label2id=labels.label2id(),
            local_files_only=True,
            ignore_mismatched_sizes=True,  # a base model's head may have another number of classes
            dtype=torch.float32,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    if cfg.train.gradient_checkpointing:
        # Non-reentrant: needs no input that requires grad, so it works with frozen embeddings (LoRA).
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # the name since transformers 5.24
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if cfg.lora.enabled:
        from trainer.lora import apply_lora

        model = apply_lora(model, cfg.lora)
    return model


def compile_blocks(model, backend: str | None) -> None:
    """Compile the repeated blocks (the encoder layers) in place, each with the same code, so one
    compilation serves every layer and the state_dict keys stay those of the plain model (accelerate's
    own regional compilation for DDP wraps the blocks and renames every key under them). Call it on the
    unwrapped model after ``accelerator.prepare``, so DeepSpeed's hooks are installed first."""
    if backend is None:
        return
    from accelerate.utils.other import compile_regions_deepspeed

    # In place (Module.compile), despite its name not specific to DeepSpeed; dynamic=None lets dynamo
    # mark the sequence length dynamic after the first length change instead of recompiling per length.
    compile_regions_deepspeed(model, backend=backend, dynamic=None)


def reset_zero3_trace(model) -> bool:
    """Make DeepSpeed ZeRO-3 record its parameter-fetch trace again at the next training step; True when
    there was one to reset. No-op for other engines.

    ZeRO-3 records the order in which modules fetch their parameters during one pass (DeBERTa's relative
    embeddings, read by the encoder outside their own module, are picked up along the way) and prefetches
    along it. After a resume, a trace recorded in training failed in the first evaluation, and one carried
    through an evaluation (and its 16-bit gather for the save) failed at the next training step, both with
    ``RuntimeError: tracing error at step 10 ... expected the next 1 parameters in the parameter fetch
    queue to be (deberta.encoder.rel_embeddings.weight ...)`` (DeepSpeed 0.19.8; tests/e2e/
    test_zero3_resume.py, tests/gpu). So the trace is dropped around every evaluation and after a resume;
    re-recording costs one pass without prefetch.
    """
    optimizer = getattr(model, "optimizer", None)  # a DeepSpeedEngine holds its ZeRO optimizer
    offload = getattr(optimizer, "parameter_offload", None)
    coordinator = offload.get_param_coordinator() if offload is not None else None
    if coordinator is None or not hasattr(coordinator, "_invalidate_trace"):
        return False
    if not coordinator.is_invalid_trace():  # invalidating an invalid trace raises
        coordinator._invalidate_trace()
    return True


def _no_decay_names(model) -> set[str]:
    """Biases and normalisation weights: decaying them only hurts (BERT's recipe, HF Trainer's default)."""
    import torch

    names = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, torch.nn.LayerNorm) or "norm" in type(module).__name__.lower()
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if is_norm or param_name == "bias":
                names.add(full)
    return names


def param_group_names(model) -> list[list[str]]:
    """The trainable parameters' names per optimizer group (decayed, not decayed), in the optimizer's
    order: a torch optimizer's state_dict numbers parameters in this order (trainer/engine_switch.py)."""
    no_decay = _no_decay_names(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    return [[n for n in trainable if n not in no_decay], [n for n in trainable if n in no_decay]]


def param_groups(model, weight_decay: float) -> list[dict[str, Any]]:
    params = dict(model.named_parameters())
    decayed, not_decayed = param_group_names(model)
    return [
        {"params": [params[n] for n in decayed], "weight_decay": weight_decay},
        {"params": [params[n] for n in not_decayed], "weight_decay": 0.0},
    ]


def deepspeed_config(accelerator) -> dict[str, Any] | None:
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return plugin.deepspeed_config if plugin is not None else None


def fill_deepspeed_auto(accelerator, cfg: Config) -> None:
    """Fill the "auto" values accelerate leaves to the script with our config (clipping)."""
    ds = deepspeed_config(accelerator)
    if ds is not None and ds.get("gradient_clipping", "auto") == "auto":
        ds["gradient_clipping"] = cfg.train.max_grad_norm


def _fused_adamw_ok(model) -> bool:
    import torch

    supported = ("cpu", "cuda", "xpu", "mps", "hpu")
    params = [p for p in model.parameters() if p.requires_grad]
    return bool(params) and all(
        p.device.type in supported and torch.is_floating_point(p) for p in params
    )


def build_optimizer(accelerator, model, cfg: Config, total_steps: int):
    """(optimizer, scheduler) for ``total_steps`` optimizer steps."""
    import torch
    from accelerate.utils import DummyOptim, DummyScheduler
    from transformers import get_scheduler

    lr = cfg.train.resolved_lr(cfg.model.is_demo())
    groups = param_groups(model, cfg.train.weight_decay)
    ds = deepspeed_config(accelerator) or {}
    warmup = min(cfg.train.warmup_steps, total_steps)
    if "optimizer" in ds:
        optimizer = DummyOptim(groups, lr=lr, weight_decay=cfg.train.weight_decay)
    else:
        # The fused kernel (one launch per step, CPU and GPU since torch 2.4) is HF Trainer's default too.
        optimizer = torch.optim.AdamW(groups, lr=lr, fused=_fused_adamw_ok(model))

    def ours(opt):
        return get_scheduler(
            cfg.train.scheduler, opt, num_warmup_steps=warmup, num_training_steps=total_steps
        )

    if "scheduler" in ds:
        scheduler = DummyScheduler(optimizer, total_num_steps=total_steps, warmup_num_steps=warmup)
    elif isinstance(optimizer, DummyOptim):  # DeepSpeed builds the optimizer; ours wraps it afterwards
        scheduler = DummyScheduler(
            optimizer, total_num_steps=total_steps, warmup_num_steps=warmup, lr_scheduler_callable=ours
        )
    else:
        scheduler = ours(optimizer)
    return optimizer, scheduler
