"""The records the core returns. The JSON CLI prints them and the app renders them; docs/FORMAT.md
("JSON CLI") is their contract. Unknown values are None, never guessed."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from tui.core.names import MINDSPORE_PERIODIC

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any, Literal

    from tui.core.dcp import DcpReport
    from tui.core.metric import Metric
    from tui.core.mindspore_ckpt import MindSporeReport
    from tui.core.pickle_scan import PickleReport
    from tui.core.weights import WeightsSummary

# What a checkpoint is; the JSON CLI prints these strings (docs/FORMAT.md, "JSON CLI").
KINDS: tuple[Kind, ...] = (
    "hf-checkpoint",
    "hf-model",
    "peft-adapter",
    "deepspeed",
    "accelerate-state",
    "lightning",
    "torch-pickle",
    "safetensors-file",
    "mindspore",
    "torch-dcp",
)
if TYPE_CHECKING:  # the same strings (a test checks): a Literal would need typing at run time
    Kind = Literal[
        "hf-checkpoint",
        "hf-model",
        "peft-adapter",
        "deepspeed",
        "accelerate-state",
        "lightning",
        "torch-pickle",
        "safetensors-file",
        "mindspore",
        "torch-dcp",
    ]
else:
    Kind = str


def __getattr__(name: str) -> Any:
    """``Metric`` lives in tui.core.metric, imported on first use (a checkpoint with an evaluation): creating
    a frozen dataclass (six methods compiled from source) costs every command's start."""
    if name == "Metric":
        from tui.core.metric import Metric

        return Metric
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class CheckpointInfo:
    """One checkpoint found under a root. ``path`` is posix and relative to the root."""

    path: str
    kind: Kind
    complete: bool = True
    problems: list[str] = field(default_factory=list)
    size_bytes: int = 0
    tensors: int | None = None
    parameters: int | None = None
    dtypes: dict[str, int] | None = None
    step: int | None = None
    epoch: float | None = None
    fold: int | None = None
    best: bool = False
    # What the browser groups, sorts and badges by.
    run: str | None = None  # posix path (relative to root) of the run folder this belongs to
    in_progress: bool = False  # being written now / never committed (lock, temp name, no manifest)
    promoted: bool = False
    metric: Metric | None = None  # its own (last) evaluation when known
    mtime: float | None = None
    # The step within ``epoch`` when a name counts steps per epoch (MindSpore's <prefix>-<epoch>_<step>.ckpt);
    # ``step`` stays the global step, None when the files do not say it.
    epoch_step: int | None = None
    # Why this tool could not read the contents (an encrypted file, a newer format): nothing was checked,
    # which is not the same as nothing being wrong.
    unsupported: str | None = None
    # Bytes the files occupy on disk, what deleting them frees: below ``size_bytes`` for sparse or
    # compressed files. None where the platform does not say.
    allocated_bytes: int | None = None
    # The static pickle scan of every pickle it holds (docs/SECURITY.md): "clean", "unsafe" or "not verified",
    # the worst of them; None when it holds no pickle.
    pickle_scan: str | None = None

    def add_problem(self, text: str) -> None:
        self.problems.append(text)
        self.complete = False

    def to_json(self) -> dict[str, Any]:
        out = self.__dict__.copy()  # the fields in order (set by __init__), mutable ones copied below
        if len(out) != len(_INFO_FIELDS):  # something else was set on it: the fields by name
            out = {name: getattr(self, name) for name in _INFO_FIELDS}
        out["problems"] = list(self.problems)
        out["dtypes"] = dict(self.dtypes) if self.dtypes is not None else None
        out["metric"] = self.metric.to_json() if self.metric else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckpointInfo:
        """The record ``to_json`` gave (a remembered scan: ``tui.core.snapshot``). KeyError or TypeError when
        ``data`` is not one."""
        values = {name: data[name] for name in _INFO_FIELDS}
        metric = values["metric"]
        if metric is not None:
            from tui.core.metric import Metric

            values["metric"] = Metric(metric["name"], metric["value"], metric["step"])
        else:
            values["metric"] = None
        return cls(**values)


_INFO_FIELDS = tuple(f.name for f in fields(CheckpointInfo))


def run_of(info: CheckpointInfo) -> str:
    """The run a checkpoint belongs to, posix relative to the root: its run folder when known, else the
    folder holding it ('.' for the root). The browser groups rows by it; prune ranks within it.

    MindSpore's ModelCheckpoint writes every run into one folder as ``<prefix>-<epoch>_<step>.ckpt`` and
    renames the prefix ``<prefix>_1`` when files with the prefix exist, so there a run is the folder plus the
    prefix: ``ckpts/fer-*`` and ``ckpts/fer_1-*`` are two runs."""
    if info.run is not None:
        return info.run
    folder, _, name = info.path.rpartition("/")
    folder = folder or "."
    if info.kind == "mindspore" and (m := MINDSPORE_PERIODIC.match(name)):
        label = m["prefix"] + _PREFIX_RUN
        return label if folder == "." else f"{folder}/{label}"
    return folder


_PREFIX_RUN = "-*"  # ends the run label of files sharing a name prefix in one folder


def folder_of_run(run: str) -> str:
    """The folder a ``run_of`` label names: itself, or the folder holding a prefix run's files."""
    if run.endswith(_PREFIX_RUN):
        return run.rpartition("/")[0] or "."
    return run


def progress_key(info: CheckpointInfo) -> tuple[bool, float, bool, int]:
    """Where a checkpoint is in its training, for ordering (the step sort, prune's "latest"): the global step,
    or (epoch, step within it) where a name counts steps per epoch; checkpoints that say nothing come first."""
    if info.epoch_step is not None:
        step = info.step if info.step is not None else info.epoch_step
        return (True, info.epoch or 0.0, True, step)
    return (info.step is not None, float(info.step or 0), False, 0)


def progress_text(info: CheckpointInfo) -> str:
    """The step as a cell shows it: ``1200``; ``e46:449`` (epoch 46, step 449 in it) when only a per-epoch step
    is known; ``e3`` when only the epoch is; '' when neither."""
    if info.step is not None:
        return str(info.step)
    if info.epoch is not None:
        return f"e{info.epoch:g}:{info.epoch_step}" if info.epoch_step is not None else f"e{info.epoch:g}"
    return ""


@dataclass
class Inspection:
    """``ckpt-tui inspect``: everything ``ls`` says plus the detail panes."""

    info: CheckpointInfo
    config: dict[str, Any] | None = None  # the summary (model type, sizes, labels, dtype)
    config_file: dict[str, Any] | None = None  # the whole config.json / adapter_config.json, as written
    tokenizer: dict[str, Any] | None = None
    # From the safetensors headers, the static scan of a pickle, a MindSpore file or a DCP .metadata.
    weights: WeightsSummary | PickleReport | MindSporeReport | DcpReport | None = None
    trainer_state: dict[str, Any] | None = None
    files: list[dict[str, Any]] = field(default_factory=list)  # [{"path", "size_bytes"}]
    manifest: dict[str, Any] | None = None
    # A resumable step checkpoint's process layout (tui.core.resume_layout.Layout.to_json), else None.
    resume: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out = self.info.to_json()
        out.update(
            config=self.config,
            config_file=self.config_file,
            tokenizer=self.tokenizer,
            weights=self.weights.inspect_json() if self.weights is not None else None,
            trainer_state=self.trainer_state,
            files=self.files,
            manifest=self.manifest,
            resume=self.resume,
        )
        return out
