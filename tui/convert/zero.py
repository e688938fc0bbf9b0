"""Consolidate DeepSpeed ZeRO-2/3 shards into safetensors with DeepSpeed's own zero_to_fp32."""

from __future__ import annotations

from pathlib import Path

from tui.convert import ConvertError, save_state_dict


def consolidate(checkpoint_dir: Path, tag: str | None, config_path: Path, out: Path) -> None:
    """``checkpoint_dir`` holds ``latest`` (tag None) or the tag folder ``tag``; weights come out fp32."""
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
