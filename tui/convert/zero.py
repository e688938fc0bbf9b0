"""Consolidate DeepSpeed ZeRO-2/3 shards into safetensors with DeepSpeed's own zero_to_fp32, or, when slim
dropped the optimizer shards of an fp32 ZeRO-1/2 checkpoint, from the model states' full ``module``."""

from __future__ import annotations

import os
from pathlib import Path

from tui.convert import ConvertError, save_state_dict
from tui.core.files import read_small_text
from tui.core.names import DEEPSPEED_LATEST, DEEPSPEED_SHARD, MP_MODEL_STATES


def consolidate(checkpoint_dir: Path, tag: str | None, config_path: Path, out: Path) -> None:
    """``checkpoint_dir`` holds ``latest`` (tag None) or the tag folder ``tag``; weights come out fp32
    (in the model states' dtype when only those are left)."""
    module = _module_without_shards(Path(checkpoint_dir), tag)
    if module is not None:
        save_state_dict(module, config_path, out)
        return
    try:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    except ImportError:
        raise ConvertError(
            f"{checkpoint_dir}: consolidating ZeRO shards needs deepspeed: pip install 'ckpt-tui[train]'"
        ) from None
    try:
        state_dict = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint_dir), tag=tag)
    except (OSError, ValueError, KeyError, RuntimeError, AssertionError) as e:
        where = Path(checkpoint_dir) / (tag or "")
        raise ConvertError(f"{where}: cannot consolidate ZeRO shards ({str(e).splitlines()[0]})") from None
    save_state_dict(dict(state_dict), config_path, out)


def _module_without_shards(checkpoint_dir: Path, tag: str | None) -> dict | None:
    """The model states' ``module`` when the tag folder holds no optimizer shard and one ZeRO-1/2 model
    states file (what slim leaves of an fp32 run); None otherwise (zero_to_fp32 then says what is wrong)."""
    tag = tag or (read_small_text(checkpoint_dir / DEEPSPEED_LATEST) or "").strip()
    folder = checkpoint_dir / tag if tag and "/" not in tag else None
    try:
        names = os.listdir(folder) if folder is not None else []
    except OSError:
        return None
    shards = [n for n in names if DEEPSPEED_SHARD.match(n) and n.endswith("optim_states.pt")]
    states = [n for n in names if MP_MODEL_STATES.match(n)]
    if shards or len(states) != 1 or states[0].startswith("zero_pp_rank_"):
        return None
    import torch

    path = folder / states[0]
    try:
        saved = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad pickles; all mean "cannot load this file"
        raise ConvertError(f"{path}: cannot load safely ({str(e).splitlines()[0]})") from None
    module = saved.get("module") if isinstance(saved, dict) else None
    if not isinstance(module, dict) or not module or any(t.numel() == 0 for t in module.values()):
        raise ConvertError(f"{path}: no full model weights in it and no optimizer shards beside it")
    return dict(module)
