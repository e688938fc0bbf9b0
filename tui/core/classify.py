"""What a checkpoint is, from names alone: the kind of a folder from the names it holds, the kind a
half-written temp folder's name implies, a loose file that starts like a pickle, and the fold and step
numbers names carry (docs/FORMAT.md). The scan classifies with these; nothing here reads a directory."""

from __future__ import annotations

from tui.core import commit
from tui.core.model import Kind
from tui.core.names import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    CHECKPOINT_N,
    CONFIG_FILE,
    FOLD_NAME,
    GLOBAL_STEP,
    HF_WEIGHTS,
    MANIFEST_NAME,
    MP_MODEL_STATES,
    RANDOM_STATES,
    SAFETENSORS_WEIGHTS,
    STEP_NAME,
    TRAINER_STATE,
    ZERO_RANK_SHARD,
    is_dcp_folder,
)
from tui.core.pickle_scan import sniff


def classify_folder(name: str, files: set[str], dirs: set[str]) -> Kind | None:
    """The kind of a folder named ``name`` holding ``files`` and ``dirs``, or None when it is not one."""
    # Trainer's output_dir also holds trainer_state.json + training_args.bin after save_model/save_state,
    # but no optimizer: that one is an hf-model. Resumable state is what makes an hf-checkpoint.
    if TRAINER_STATE in files and (
        CHECKPOINT_N.match(name) or "optimizer.pt" in files or "scheduler.pt" in files
    ):
        return "hf-checkpoint"
    if any(MP_MODEL_STATES.match(f) or ZERO_RANK_SHARD.match(f) for f in files):
        return "deepspeed"
    if any(RANDOM_STATES.match(f) for f in files) or (
        "optimizer.bin" in files
        and ("model.safetensors" in files or "pytorch_model.bin" in files or "pytorch_model" in dirs)
    ):
        return "accelerate-state"
    if ADAPTER_CONFIG in files and any(w in files for w in ADAPTER_WEIGHTS):
        return "peft-adapter"
    if CONFIG_FILE in files and any(HF_WEIGHTS.match(f) or f.endswith(".index.json") for f in files):
        return "hf-model"
    if is_dcp_folder(files):
        return "torch-dcp"
    if MANIFEST_NAME in files and any(SAFETENSORS_WEIGHTS.match(f) for f in files):
        return "safetensors-file"  # a committed weights-only export (of a MindSpore or DCP checkpoint)
    return None


def classify_by_name(name: str) -> Kind | None:
    """Kind implied by a checkpoint folder's name alone (for half-written temp folders)."""
    if CHECKPOINT_N.match(name):
        return "hf-checkpoint"
    if GLOBAL_STEP.match(name):
        return "deepspeed"
    if STEP_NAME.match(name):
        return "accelerate-state"
    if FOLD_NAME.search(name):
        return "hf-model"
    return None


def looks_like_pickle(path: str) -> bool:
    """A torch zip or a pickle of any protocol (tui.core.pickle_scan.sniff)."""
    return sniff.looks_like_pickle(path)


def fold_from_path(rel: str) -> int | None:
    """Fold index from the nearest path component named ``*_fold_<k>``, ``fold<k>`` or ``fold-<k>``."""
    for part in reversed(rel.split("/")):
        part = commit.target_name_of_temp(part) or part
        stem = part.rsplit(".", 1)[0] if "." in part else part
        m = FOLD_NAME.search(stem)
        if m:
            return int(m.group(1))
    return None


def step_from_name(name: str) -> int | None:
    for pattern in (CHECKPOINT_N, GLOBAL_STEP, STEP_NAME):
        m = pattern.match(name)
        if m:
            return int(m.group(1))
    return None
