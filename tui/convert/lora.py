"""Merge a PEFT LoRA adapter into its base model (local folders only: nothing is downloaded)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tui.convert import MAX_SHARD_SIZE, ConvertError, load_config, model_class_for
from tui.core.files import read_refusal


def base_model_path(adapter_dir: Path, root: Path) -> Path:
    """``base_model_name_or_path`` as a local folder: absolute, or relative to the adapter, its parents or
    ROOT. A hub id that is not on disk is an error, never a download."""
    config_file = adapter_dir / "adapter_config.json"
    try:
        base = json.loads(config_file.read_text(encoding="utf-8"))["base_model_name_or_path"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConvertError(f"{config_file}: cannot read base_model_name_or_path ({e})") from None
    if not isinstance(base, str) or not base:
        raise ConvertError(f"{config_file}: base_model_name_or_path is empty")
    given = Path(base)
    candidates = (
        [given]
        if given.is_absolute()
        else [adapter_dir / given, *(p / given for p in adapter_dir.parents), root / given]
    )
    for c in candidates:
        if (c / "config.json").is_file():
            _check_inside(c, Path(os.path.realpath(root)), config_file)
            return c
    raise ConvertError(
        f"{config_file}: base model {base!r} is not a local folder with config.json; put it on disk and "
        "point base_model_name_or_path at it"
    )


def _check_inside(base: Path, root: Path, config_file: Path) -> None:
    """A base named by the adapter's file (someone else's) is read only inside ROOT: the folder and every
    entry at its top, which from_pretrained picks by name. The user's --base is their own choice."""
    for path in [base, *sorted(base.iterdir())]:
        if why := read_refusal(path, root, folder_ok=True):
            raise ConvertError(
                f"{config_file}: base model {path} {why}; pass --base with the base model's folder to use it"
            )


def merge(
    adapter_dir: Path, out: Path, *, root: Path, config: Path | None = None, base: Path | None = None
) -> None:
    """Load the base (with the fine-tuned config beside the adapter when there is one, so the label head
    has the right size), apply the adapter, merge, and save safetensors into ``out``. ``base``: the base
    model folder chosen by the user, for an adapter whose base_model_name_or_path is not on disk."""
    from peft import PeftModel

    if base is not None and not (base / "config.json").is_file():
        raise ConvertError(f"{base}: not a model folder (no config.json); give the base model's folder")
    base = base if base is not None else base_model_path(adapter_dir, root)
    task = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8")).get("task_type")
    model_config = load_config(config if config is not None else base / "config.json")
    if task == "SEQ_CLS":
        from transformers import AutoModelForSequenceClassification as cls
    else:
        cls = model_class_for(model_config)
    try:
        model = cls.from_pretrained(str(base), config=model_config, local_files_only=True)
        merged = PeftModel.from_pretrained(model, str(adapter_dir), local_files_only=True).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ConvertError(f"{adapter_dir}: cannot merge into {base} ({str(e).splitlines()[0]})") from None
    merged.save_pretrained(str(out), max_shard_size=MAX_SHARD_SIZE)
