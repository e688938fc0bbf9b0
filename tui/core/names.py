"""Every on-disk name the project writes or recognises: file names, folder names and name patterns.

The trainer writes these names and the browser reads them (docs/FORMAT.md is the contract), so both import
them from here; a name spelled in two modules drifts. Standard library only, and nothing else: any module of
``tui`` or ``trainer`` may import it.
"""

from __future__ import annotations

import re

# --- our run folders (docs/FORMAT.md, "Run folder") ------------------------------------------------------

RUN_FILE = "run.json"
LOCK_FILE = ".lock"  # {"pid", "host", "started"} while a trainer writes the run
FOLDS_FILE = "folds.csv"
CV_FILE = "cv.json"
OOF_FILE = "oof.csv"
PROMOTED_DIR = "promoted"  # <run>/promoted/<name>/: exports made by `promote`
MANIFEST_NAME = "ckpt_manifest.json"  # written last by the commit protocol (tui.core.commit)
# The manifest's "kind": what the committed folder is.
STEP_CHECKPOINT_KIND = "step-checkpoint"  # a resumable step folder
FOLD_MODEL_KIND = "fold-model"  # <model>_fold_<k>/: the best model of its fold
PROMOTED_KIND = "promoted"  # an export made by `promote`
TRAIN_STATE = "train_state.json"  # our resumable step folders
STEP_DIR_PREFIX = "step_"
STEP_DIR = re.compile(r"^step_(\d+)$")
VALID_DF = re.compile(r"^valid_df_fold_(\d+)\.csv$")
FOLD_MODEL_DIR = re.compile(r"^(?P<model>.+)_fold_(?P<fold>\d+)$")


def step_dir_name(step: int) -> str:
    return f"{STEP_DIR_PREFIX}{step}"


def valid_df_name(fold: int) -> str:
    return f"valid_df_fold_{fold}.csv"


def fold_model_dir_name(model: str, fold: int) -> str:
    return f"{model}_fold_{fold}"


# --- the trash (docs/FORMAT.md, "Trash") -------------------------------------------------------------------

TRASH_DIR = ".ckpt-trash"
TRASH_ENTRY_FILE = "entry.json"
TRASH_ITEM = "item"

# Folders a walk never enters: the trash, and tool folders that never hold checkpoints.
SKIP_DIRS = frozenset({TRASH_DIR, ".git", "node_modules", "__pycache__", ".venv"})

# --- names other tools write (Hugging Face, DeepSpeed, accelerate, Lightning, PEFT) ----------------------

CONFIG_FILE = "config.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
TRAINER_STATE = "trainer_state.json"  # HF Trainer; our fold folders write one too
TRAINING_ARGS = "training_args.bin"
DEEPSPEED_LATEST = "latest"  # names the tag folder DeepSpeed resumes from
LIGHTNING_LAST = "last.ckpt"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spm.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "added_tokens.json",
)
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")  # loose files that may be torch checkpoints

CHECKPOINT_N = re.compile(r"^checkpoint-(\d+)$")  # HF Trainer
GLOBAL_STEP = re.compile(r"^global_step(\d+)$")  # DeepSpeed tag folder
STEP_NAME = re.compile(r"^(?:step|global_step)[_-]?(\d+)$")  # accelerate / our step folders
FOLD_NAME = re.compile(r"(?:^|[_\-.])fold[_-]?(\d+)$", re.IGNORECASE)
RANDOM_STATES = re.compile(r"^random_states_(\d+)\.pkl$")  # accelerate save_state
# One ZeRO rank's shard; group 1 is the rank.
ZERO_RANK_SHARD = re.compile(r"^(?:bf16_|fp16_)?zero_pp_rank_(\d+)_mp_rank_\d+_(?:model|optim)_states\.pt$")
MP_MODEL_STATES = re.compile(r"^(?:zero_pp_rank_\d+_)?mp_rank_\d+_model_states\.pt$")
# Any file of a DeepSpeed checkpoint tag folder (what zero_to_fp32 consolidates).
DEEPSPEED_SHARD = re.compile(
    r"^(?:bf16_|fp16_)?(?:zero_pp_rank_\d+_)?mp_rank_\d+_(?:model|optim)_states\.pt$"
)
LIGHTNING_NAME_STEP = re.compile(r"(?:^|[-_])step=(\d+)")
LIGHTNING_NAME_EPOCH = re.compile(r"(?:^|[-_])epoch=(\d+)")
# MindSpore's ModelCheckpoint convention, "<prefix>-<epoch>_<step>.ckpt" (e.g. fer-5_449.ckpt): the step
# counts within the epoch. Matched on the name without its suffix.
EPOCH_STEP_NAME = re.compile(r"-(\d+)_(\d+)$")
MINDSPORE_SUFFIX = ".ckpt"
MINDSPORE_PERIODIC = re.compile(r"^(?P<prefix>.+)-(?P<epoch>\d+)_(?P<step>\d+)\.ckpt$")
# ModelCheckpoint renames its prefix to "<prefix>_<n>" when files with the prefix exist: a new run.
MINDSPORE_RERUN_PREFIX = re.compile(r"^(?P<base>.+)_(?P<n>\d+)$")
MINDSPORE_BEST = "best_model.ckpt"  # the names MindSpore tutorials and model zoo scripts save under
MINDSPORE_FINAL = "final_model.ckpt"
# torch.distributed.checkpoint (FSDP, torchtitan, accelerate FSDP): the pickled plan and the data files.
DCP_METADATA = ".metadata"
DCP_DATA_SUFFIX = ".distcp"


def is_dcp_folder(files: set[str]) -> bool:
    """A folder holding DCP's ``.metadata`` or any ``*.distcp`` file."""
    return DCP_METADATA in files or any(f.endswith(DCP_DATA_SUFFIX) for f in files)
HF_WEIGHTS = re.compile(
    r"^(?:model|pytorch_model|tf_model|flax_model)(?:-\d+-of-\d+)?\.(?:safetensors|bin|h5|msgpack)$"
)
SAFETENSORS_WEIGHTS = re.compile(r"^model(?:-\d+-of-\d+)?\.safetensors$")  # what an HF export holds
SAFETENSORS_SHARD = re.compile(r"^(?P<stem>.+)-(?P<i>\d+)-of-(?P<n>\d+)\.safetensors$")
PICKLE_WEIGHTS = ("pytorch_model.bin", "adapter_model.bin", "model.bin")
PICKLE_WEIGHT_SHARD = re.compile(r"^pytorch_model-\d+-of-\d+\.bin$")
