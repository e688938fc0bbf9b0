"""Torch-backed conversions for ``promote``: ZeRO and DCP consolidation, LoRA merge, .bin -> safetensors, and
the reload checks. This module is the ``tui.core.promote.Converter`` the CLI hands to ``promote`` (the core never
imports it; the app never passes it). torch and transformers are imported inside the functions, when a
conversion runs; each function raises ``ConvertError`` with one line for the user."""

from __future__ import annotations

from pathlib import Path

from tui.convert.verify import verify_reload

__all__ = [
    "ConvertError",
    "bin_to_safetensors",
    "consolidate_dcp",
    "consolidate_zero",
    "merge_lora",
    "save_state_dict",
    "verify_dcp",
    "verify_reload",
]

MAX_SHARD_SIZE = "5GB"  # docs/FORMAT.md: exports are sharded above 5 GB


class ConvertError(Exception):
    """A conversion that cannot be done; the message names the file and what to do."""


def model_class_for(config):
    """The transformers class named by ``config.architectures``, else AutoModel."""
    return candidate_classes(config)[0]


def candidate_classes(config, state_keys=()) -> list:
    """Classes to try, most likely first: ``config.architectures``, then a classification head when the
    weights have one (a bare config.json names no architecture), then the bare AutoModel."""
    import transformers

    found = [
        getattr(transformers, a)
        for a in getattr(config, "architectures", None) or []
        if hasattr(transformers, a)
    ]
    if any(k.startswith(("classifier.", "score.")) for k in state_keys):
        found.append(transformers.AutoModelForSequenceClassification)
    found.append(transformers.AutoModel)
    return list(dict.fromkeys(found))


def load_config(config_path: Path):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(Path(config_path).parent), local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ConvertError(f"{config_path}: not a usable model config ({str(e).splitlines()[0]})") from None


def save_state_dict(state_dict: dict, config_path: Path, out: Path) -> None:
    """Load ``state_dict`` into a model built from ``config_path`` (this checks every name and shape)
    and save it as safetensors into ``out``."""
    config = load_config(config_path)
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    tried = []
    for cls in candidate_classes(config, state_dict):
        model = cls.from_config(config) if cls.__name__.startswith("Auto") else cls(config)
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        tied = set(getattr(model, "all_tied_weights_keys", None) or {})
        missing = [k for k in missing if k not in tied]
        if not missing and not unexpected:
            break
        tried.append(
            f"{cls.__name__}: {len(missing)} missing, {len(unexpected)} unexpected, e.g. {(missing or unexpected)[0]}"
        )
    else:
        raise ConvertError(
            f"{config_path}: weights fit no model class ({'; '.join(tried)}); is this the right config.json?"
        )
    model.save_pretrained(str(out), max_shard_size=MAX_SHARD_SIZE)


def consolidate_zero(checkpoint_dir: Path, tag: str | None, config_path: Path, out: Path) -> None:
    from tui.convert.zero import consolidate

    consolidate(checkpoint_dir, tag, config_path, out)


def consolidate_dcp(dcp_dir: Path, tensors: dict[str, tuple[str, tuple[int, ...]]], out: Path) -> None:
    from tui.convert.dcp import consolidate

    consolidate(dcp_dir, tensors, out)


def verify_dcp(dcp_dir: Path, exported: Path) -> str | None:
    from tui.convert.dcp import verify

    return verify(dcp_dir, exported)


def merge_lora(
    adapter_dir: Path, out: Path, *, root: Path, config: Path | None = None, base: Path | None = None
) -> None:
    from tui.convert.lora import merge

    merge(adapter_dir, out, root=root, config=config, base=base)


def bin_to_safetensors(bin_path: Path, config_path: Path, out: Path) -> None:
    import torch

    try:
        state_dict = torch.load(str(bin_path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad pickles; all mean "cannot load this file"
        raise ConvertError(f"{bin_path}: cannot load safely ({str(e).splitlines()[0]})") from None
    if not isinstance(state_dict, dict):
        raise ConvertError(f"{bin_path}: holds a {type(state_dict).__name__}, not a state dict")
    save_state_dict(state_dict, config_path, out)
