"""Typed trainer configuration: dataclasses loaded from YAML with dotted command-line overrides.

Sections and their keys are the dataclasses below (``data``, ``model``, ``train``, ``folds``, ``lora``,
``run``). Three ways to set a value, later ones winning:

1. the field default (with no arguments at all, the embedded demo data and model are used);
2. a YAML file given with ``--config FILE``::

       data: {path: train.csv, text_column: text, label_column: label}
       model: {model_name_or_path: /models/deberta-v3-xsmall}
       train: {lr: 2.0e-5, epochs: 3}

3. dotted command-line options ``--SECTION.KEY VALUE``, e.g. ``--train.lr 3e-5 --folds.folds 0,2``.
   Lists are comma separated, ``none`` clears an optional value, a bare boolean flag means true.
   Shorthands: ``--resume``, ``--overwrite``, ``--folds 0,2``.

An unknown key (in the file or on the command line) is a one-line :class:`ConfigError` naming the key
and where it came from. ``--help`` lists every key with the help text written beside its field.
``config_hash()`` identifies the settings that change results, so a run folder can tell whether a new
invocation continues it or conflicts with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tui.core.text import lower_is_better

DEMO_LR = 2e-3  # a randomly initialised tiny model needs a far larger step than fine-tuning does
FINETUNE_LR = 2e-5
METRICS = ("f1_macro", "accuracy", "log_loss")
SCHEDULERS = ("linear", "cosine")


class ConfigError(ValueError):
    """A bad setting; the message is one line naming the key and where it came from."""


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


@dataclass
class DataConfig:
    path: str | None = _f(None, "CSV or Parquet file with the training rows; none = embedded demo data")
    text_column: str = _f("text", "column holding the text")
    text_pair_column: str | None = _f(None, "optional second text column (sentence pairs)")
    label_column: str = _f("label", "column holding the class (ints or strings)")
    id_column: str | None = _f(None, "optional id column; the row number is used when absent")
    group_column: str | None = _f(None, "optional group column: rows of one group stay in one fold")
    max_length: int = _f(128, "truncate tokenized inputs to this many tokens")
    num_workers: int | None = _f(
        None, "DataLoader worker processes per training process; none = 2 on a GPU, 0 on CPU"
    )

    def __post_init__(self) -> None:
        _require(self.max_length >= 8, "data.max_length", f"must be >= 8, got {self.max_length}")
        _require(
            self.num_workers is None or self.num_workers >= 0, "data.num_workers", "must be >= 0 or none"
        )


@dataclass
class ModelConfig:
    model_name_or_path: str | None = _f(
        None, "local Hugging Face model folder (never downloaded); none = embedded demo model"
    )
    # The number of labels is not a setting: it is derived from the data (data.LabelMap).

    def is_demo(self) -> bool:
        return self.model_name_or_path is None


@dataclass
class TrainConfig:
    lr: float | None = _f(None, f"peak learning rate; none = {FINETUNE_LR} ({DEMO_LR} for the demo model)")
    weight_decay: float = _f(0.01, "AdamW weight decay (not applied to biases and LayerNorm weights)")
    epochs: int = _f(4, "epochs per fold")
    batch_size: int = _f(32, "training batch size per process")
    eval_batch_size: int = _f(64, "evaluation batch size per process")
    grad_accum: int = _f(1, "gradient accumulation steps")
    max_grad_norm: float = _f(1.0, "gradient clipping norm; 0 disables clipping")
    warmup_steps: int = _f(10, "linear warmup, in optimizer steps")
    scheduler: str = _f("linear", "learning-rate decay after warmup: linear | cosine")
    eval_every: int = _f(0, "evaluate every N optimizer steps; 0 = at the end of every epoch")
    metric: str = _f("f1_macro", "model-selection metric: f1_macro | accuracy | log_loss")
    metric_mode: str = _f("auto", "max | min | auto (min for log_loss, max otherwise)")
    patience: int = _f(0, "stop a fold after N evaluations without improvement; 0 = never stop early")
    seed: int = _f(42, "seed for model initialisation, dropout and data order")
    tf32: bool = _f(True, "let fp32 matmuls use TF32 tensor cores on NVIDIA GPUs (no effect on CPU)")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward: less GPU memory, ~30% slower")
    compile: str | None = _f(
        None, "torch.compile backend for the repeated transformer blocks (inductor, eager...); none = off"
    )
    save_every: int = _f(50, "write a resumable checkpoint every N optimizer steps; 0 = never")
    keep_last: int = _f(2, "resumable checkpoints kept per fold (the best one is always kept too)")
    min_free_gb: float = _f(
        1.0, "free space (GB) to leave on the output filesystem after each save; a save that would "
        "leave less first removes step checkpoints keep_last drops anyway, else stops the run resumable"
    )
    group_by_length: bool = _f(
        True, "batch rows of similar length together (less padding); the order stays seeded per epoch"
    )
    log_every: int = _f(
        0, "off a terminal, a progress line every N optimizer steps; 0 = auto (about 10 per epoch, "
        "at most one per 50 steps)"
    )
    cpu_threads: int = _f(
        0, "torch threads per process on CPU; 0 = auto (OMP_NUM_THREADS if you set it, else the cores "
        "available divided by the processes on this machine)"
    )

    def __post_init__(self) -> None:
        _require(self.lr is None or self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        _require(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        for key in ("epochs", "batch_size", "eval_batch_size", "grad_accum", "keep_last"):
            _require(getattr(self, key) >= 1, f"train.{key}", f"must be >= 1, got {getattr(self, key)}")
        for key in ("warmup_steps", "eval_every", "patience", "save_every", "log_every", "cpu_threads"):
            _require(getattr(self, key) >= 0, f"train.{key}", f"must be >= 0, got {getattr(self, key)}")
        _require(self.max_grad_norm >= 0, "train.max_grad_norm", "must be >= 0")
        _require(self.min_free_gb >= 0, "train.min_free_gb", f"must be >= 0, got {self.min_free_gb}")
        _require(self.scheduler in SCHEDULERS, "train.scheduler", f"must be one of {', '.join(SCHEDULERS)}")
        _require(self.metric in METRICS, "train.metric", f"must be one of {', '.join(METRICS)}")
        _require(self.metric_mode in ("auto", "max", "min"), "train.metric_mode", "must be max, min or auto")

    def mode(self) -> str:
        if self.metric_mode != "auto":
            return self.metric_mode
        return "min" if lower_is_better(self.metric) else "max"

    def resolved_lr(self, demo: bool) -> float:
        if self.lr is not None:
            return self.lr
        return DEMO_LR if demo else FINETUNE_LR


@dataclass
class FoldConfig:
    num_folds: int = _f(5, "number of cross-validation folds")
    folds: list[int] | None = _f(None, "train only these folds, e.g. 0,2; none = all")
    seed: int = _f(42, "seed of the fold assignment (written once to folds.csv)")

    def __post_init__(self) -> None:
        _require(self.num_folds >= 2, "folds.num_folds", f"must be >= 2, got {self.num_folds}")
        if self.folds is not None:
            bad = [k for k in self.folds if not 0 <= k < self.num_folds]
            _require(not bad, "folds.folds", f"{bad} outside 0..{self.num_folds - 1}")
            _require(len(set(self.folds)) == len(self.folds), "folds.folds", "lists a fold twice")
            _require(bool(self.folds), "folds.folds", "is empty")

    def to_train(self) -> list[int]:
        return sorted(self.folds) if self.folds is not None else list(range(self.num_folds))


@dataclass
class LoraConfig:
    enabled: bool = _f(False, "train LoRA adapters instead of all weights")
    r: int = _f(8, "LoRA rank")
    alpha: int = _f(16, "LoRA alpha (scale = alpha / r)")
    dropout: float = _f(0.05, "dropout on the LoRA branch")
    target_modules: list[str] | None = _f(
        None, "module names that receive adapters; none = the attention projections of the model's architecture"
    )

    def __post_init__(self) -> None:
        _require(self.r >= 1, "lora.r", f"must be >= 1, got {self.r}")
        _require(0 <= self.dropout < 1, "lora.dropout", "must be in [0, 1)")
        _require(self.target_modules is None or bool(self.target_modules), "lora.target_modules", "is empty")


@dataclass
class RunConfig:
    output_dir: str = _f("runs", "folder holding run folders (and _demo/ for the embedded default)")
    run_name: str = _f("kfold", "run folder name under output_dir")
    resume: bool = _f(False, "continue the run even if its config changed (same config resumes anyway)")
    overwrite: bool = _f(False, "delete an existing run folder of this name and start again")
    dist_timeout_s: int = _f(
        7200, "seconds a rank waits in a collective (NCCL/gloo) before the job fails; rank 0 may be saving"
    )

    def __post_init__(self) -> None:
        _require(bool(self.run_name) and "/" not in self.run_name, "run.run_name", "must be a plain name")
        _require(not (self.resume and self.overwrite), "run", "--resume and --overwrite exclude each other")
        _require(self.dist_timeout_s >= 60, "run.dist_timeout_s", f"must be >= 60, got {self.dist_timeout_s}")

    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.run_name


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    folds: FoldConfig = field(default_factory=FoldConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of what changes results (not where or how often it is saved)."""
        parts = self.to_dict()
        del parts["run"]
        for section, key in _NOT_HASHED:
            parts[section].pop(key, None)
        parts["train"]["lr"] = self.train.resolved_lr(self.model.is_demo())
        canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def model_name(self) -> str:
        """``<model>`` of the fold folder names: the last path component of model_name_or_path."""
        if self.model.is_demo():
            return "demo-deberta-v2"
        return Path(self.model.model_name_or_path.rstrip("/")).name


# Settings that do not change what a fold learns (beyond rounding, as the launcher's precision does not):
# a run may continue with other values of these.
_NOT_HASHED = (
    ("train", "save_every"), ("train", "keep_last"), ("folds", "folds"), ("data", "num_workers"),
    ("train", "tf32"), ("train", "gradient_checkpointing"), ("train", "compile"),
    ("train", "log_every"), ("train", "cpu_threads"), ("train", "min_free_gb"),
)  # fmt: skip
_SECTION_TYPES = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "folds": FoldConfig,
    "lora": LoraConfig,
    "run": RunConfig,
}
_SHORTHANDS = {"--resume": "run.resume", "--overwrite": "run.overwrite", "--folds": "folds.folds"}


# ---------------------------------------------------------------------------------------------- values
def _is_optional(hint: Any) -> tuple[bool, Any]:
    args = typing.get_args(hint)
    if (typing.get_origin(hint) in (typing.Union, types.UnionType)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, rest[0]
    return False, hint


def coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """``value`` (from YAML or a command-line string) as the field's type, or a one-line ConfigError."""
    optional, base = _is_optional(hint)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{where}: {key} cannot be empty")
    try:
        if typing.get_origin(base) is list:
            (item,) = typing.get_args(base)
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list):
                raise ValueError
            return [coerce(v.strip() if isinstance(v, str) else v, item, key, where) for v in items]
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
    except (ValueError, TypeError):
        pass
    raise ConfigError(f"{where}: {key} = {value!r} is not a valid {_type_name(hint)}")


def _type_name(hint: Any) -> str:
    optional, base = _is_optional(hint)
    name = getattr(base, "__name__", str(base))
    if typing.get_origin(base) is list:
        name = f"comma-separated list of {typing.get_args(base)[0].__name__}"
    return f"{name} (or none)" if optional else name


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(overrides: dict[str, dict[str, Any]], where_of: dict[str, str]) -> Config:
    sections = {}
    for name, cls in _SECTION_TYPES.items():
        values = overrides.get(name, {})
        hints = _hints(cls)
        kwargs = {k: coerce(v, hints[k], f"{name}.{k}", where_of[f"{name}.{k}"]) for k, v in values.items()}
        try:
            sections[name] = cls(**kwargs)
        except ConfigError as e:
            key = str(e).split(":", 1)[0]
            given = [w for k, w in where_of.items() if k.startswith(f"{name}.") and w != "defaults"]
            where = where_of.get(key) if key in where_of else (given[-1] if given else "defaults")
            raise ConfigError(f"{where}: {e}") from None
    return Config(**sections)


def _check_keys(section: str, keys: typing.Iterable[str], where: str) -> None:
    if section not in _SECTION_TYPES:
        raise ConfigError(f"{where}: unknown section {section!r} (sections: {', '.join(_SECTION_TYPES)})")
    valid = {f.name for f in dataclasses.fields(_SECTION_TYPES[section])}
    for key in keys:
        if key not in valid:
            raise ConfigError(
                f"{where}: unknown key {section}.{key} (keys of {section}: {', '.join(sorted(valid))})"
            )


def load_yaml(path: Path) -> dict[str, dict[str, Any]]:
    """The sections of a YAML config file, with every key checked."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config file ({e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    out: dict[str, dict[str, Any]] = {}
    for section, values in raw.items():
        if not isinstance(values, dict):
            _check_keys(str(section), [], str(path))
            raise ConfigError(f"{path}: section {section!r} must be a mapping of keys")
        _check_keys(str(section), [str(k) for k in values], str(path))
        out[str(section)] = {str(k): v for k, v in values.items()}
    return out


# ------------------------------------------------------------------------------------------ command line
class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(f"command line: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="train.py",
        description="K-fold fine-tuning of a Hugging Face sequence classifier (see docs/TRAINER.md).",
        allow_abbrev=False,
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file with sections data/model/train/...")
    for flag in ("resume", "overwrite"):
        parser.add_argument(
            f"--{flag}",
            dest=f"run.{flag}",
            nargs="?",
            const="true",
            default=argparse.SUPPRESS,
            help=f"shorthand for --run.{flag}",
        )
    parser.add_argument(
        "--folds",
        dest="folds.folds",
        default=argparse.SUPPRESS,
        metavar="K,K",
        help="shorthand for --folds.folds",
    )
    for section, cls in _SECTION_TYPES.items():
        group = parser.add_argument_group(section)
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kwargs: dict[str, Any] = {
                "dest": f"{section}.{f.name}",
                "default": argparse.SUPPRESS,
                "metavar": "LIST"
                if typing.get_origin(_is_optional(hint)[1]) is list
                else _type_name(hint).split(" ")[0].upper(),
                "help": f"{f.metadata.get('help', '')} (default: {default})",
            }
            if _is_optional(hint)[1] is bool:
                kwargs.update(nargs="?", const="true")
            group.add_argument(f"--{section}.{f.name}", **kwargs)
    return parser


def parse_args(argv: list[str] | None = None) -> Config:
    """Config from defaults, ``--config FILE`` and dotted overrides; ConfigError on any bad input."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        first = next((u for u in unknown if u.startswith("-")), unknown[0])
        name = first.split("=", 1)[0].lstrip("-")
        if "." in name:
            section, key = name.split(".", 1)
            _check_keys(section, [key], "command line")
        raise ConfigError(f"command line: unknown option {first!r} (see --help)")
    given = {k: v for k, v in vars(args).items() if k != "config"}
    overrides: dict[str, dict[str, Any]] = {}
    where_of: dict[str, str] = {}
    for section, cls in _SECTION_TYPES.items():
        for f in dataclasses.fields(cls):
            where_of[f"{section}.{f.name}"] = "defaults"
    if args.config:
        for section, values in load_yaml(Path(args.config)).items():
            overrides.setdefault(section, {}).update(values)
            where_of.update({f"{section}.{k}": str(args.config) for k in values})
    for dotted, value in given.items():
        section, key = dotted.split(".", 1)
        overrides.setdefault(section, {})[key] = value
        where_of[dotted] = "command line"
    return _build(overrides, where_of)


def from_dict(sections: dict[str, dict[str, Any]], where: str = "config") -> Config:
    """A Config from a nested dict (e.g. run.json's ``config``), checked like a YAML file."""
    where_of = {}
    for section, values in sections.items():
        _check_keys(section, values, where)
    for section, cls in _SECTION_TYPES.items():
        for f in dataclasses.fields(cls):
            where_of[f"{section}.{f.name}"] = where
    return _build(sections, where_of)
