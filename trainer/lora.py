"""LoRA via peft: wrap a sequence classifier, and export it as a merged plain HF model plus the adapter.

The merge works on the gathered state dict, not on the live model: under ZeRO-3 the live parameters are
empty partitions on every rank, but ``accelerator.get_state_dict`` has already gathered the full weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Attention projections per architecture; the usual LoRA targets for encoders.
DEFAULT_TARGETS: dict[str, list[str]] = {
    "deberta-v2": ["query_proj", "key_proj", "value_proj"],
    "deberta": ["in_proj"],
    "bert": ["query", "key", "value"],
    "roberta": ["query", "key", "value"],
    "xlm-roberta": ["query", "key", "value"],
    "electra": ["query", "key", "value"],
    "distilbert": ["q_lin", "k_lin", "v_lin"],
}
# Freshly initialised task-head modules that must train in full (saved whole, not as LoRA deltas).
# DeBERTa's ContextPooler is not in the pretrained MLM checkpoints, so it is a new module too.
HEAD_MODULES = ("pooler", "pre_classifier", "classifier", "score")
HEAD_MODULES_PER_TYPE = {"bert": ("classifier",), "roberta": ("classifier",)}
BASE_PREFIX = "base_model.model."
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def default_target_modules(model) -> list[str]:
    """The attention projections to adapt for ``model``'s architecture."""
    model_type = getattr(model.config, "model_type", "")
    if model_type in DEFAULT_TARGETS:
        return list(DEFAULT_TARGETS[model_type])
    leaf_names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for candidates in DEFAULT_TARGETS.values():
        if set(candidates) <= leaf_names:
            return list(candidates)
    raise ValueError(
        f"no default LoRA target modules for model_type {model_type!r}: set lora.target_modules in the config"
    )


def head_modules(model) -> list[str]:
    """Top-level task-head children of ``model`` that train in full next to the adapters."""
    allowed = HEAD_MODULES_PER_TYPE.get(getattr(model.config, "model_type", ""), HEAD_MODULES)
    children = {name for name, _ in model.named_children()}
    return [name for name in allowed if name in children]


def apply_lora(model, lora_cfg):
    """Wrap ``model`` in a peft LoRA model. ``lora_cfg`` has r, alpha, dropout, target_modules (attrs or keys)."""
    from peft import LoraConfig, TaskType, get_peft_model

    targets = _get(lora_cfg, "target_modules") or default_target_modules(model)
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=int(_get(lora_cfg, "r", 8)),
        lora_alpha=float(_get(lora_cfg, "alpha", 16)),
        lora_dropout=float(_get(lora_cfg, "dropout", 0.0)),
        target_modules=list(targets),
        modules_to_save=head_modules(model),
    )
    return get_peft_model(model, config)


def _lora_layers(peft_model) -> dict[str, tuple[float, bool]]:
    """Module path (without the peft prefix) -> (scaling, fan_in_fan_out) of every LoRA Linear layer."""
    from peft.tuners.lora import LoraLayer

    adapter = peft_model.active_adapter
    layers = {}
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer) and adapter in module.lora_A:
            if adapter in getattr(module, "lora_magnitude_vector", {}):
                raise ValueError(f"cannot merge DoRA layer {name}: export supports plain LoRA only")
            layers[name.removeprefix(BASE_PREFIX)] = (module.scaling[adapter], module.fan_in_fan_out)
    return layers


def merged_state_dict(peft_model, state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The plain model's state dict with every LoRA delta folded in, keys as ``from_pretrained`` wants.

    Same arithmetic as peft's ``merge_and_unload``: W + transpose(B @ A, fan_in_fan_out) * scaling, in
    fp32 and cast back. Heads in ``modules_to_save`` take their trained copy.
    """
    import torch

    adapter = peft_model.active_adapter
    layers = _lora_layers(peft_model)
    lora_marks = (f".lora_A.{adapter}.", f".lora_B.{adapter}.", ".lora_dropout.")
    merged: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        name = key.removeprefix(BASE_PREFIX)
        if any(mark in name for mark in lora_marks) or ".original_module." in name:
            continue
        if f".modules_to_save.{adapter}." in name:
            merged[name.replace(f".modules_to_save.{adapter}.", ".")] = tensor
            continue
        module, found, leaf = name.rpartition(".base_layer.")
        if not found:
            merged[name] = tensor
        elif module in layers and leaf == "weight":
            scaling, fan_in_fan_out = layers[module]
            a = state_dict[f"{BASE_PREFIX}{module}.lora_A.{adapter}.weight"].float()
            b = state_dict[f"{BASE_PREFIX}{module}.lora_B.{adapter}.weight"].float()
            delta = b @ a
            if fan_in_fan_out:
                delta = delta.T
            merged[f"{module}.weight"] = (tensor.float() + delta * scaling).to(tensor.dtype)
        else:
            merged[f"{module}.{leaf}"] = tensor
    return merged


def save_adapter(peft_model, state_dict: Mapping[str, Any], folder: Path) -> None:
    """adapter_config.json + adapter_model.safetensors, loadable with ``PeftModel.from_pretrained``."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    adapter_sd = get_peft_model_state_dict(peft_model, state_dict=dict(state_dict))
    # safetensors refuses views of one storage; the adapter is small, so copies cost nothing.
    save_file(
        {k: v.detach().cpu().contiguous().clone() for k, v in adapter_sd.items()},
        str(folder / ADAPTER_WEIGHTS_NAME),
        metadata={"format": "pt"},
    )
    peft_model.peft_config[peft_model.active_adapter].save_pretrained(str(folder))
