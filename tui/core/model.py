"""The records the core returns. The JSON CLI prints them and the app renders them; docs/FORMAT.md
("JSON CLI") is their contract. Unknown values are None, never guessed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = (
    "hf-checkpoint",
    "hf-model",
    "peft-adapter",
    "deepspeed",
    "accelerate-state",
    "lightning",
    "torch-pickle",
    "safetensors-file",
)


@dataclass
class CheckpointInfo:
    """One checkpoint found under a root. ``path`` is posix and relative to the root."""

    path: str
    kind: str
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
    # Beyond the keys the issue requires: what the browser groups, sorts and badges by.
    run: str | None = None  # posix path (relative to root) of the run folder this belongs to
    in_progress: bool = False  # being written now / never committed (lock, temp name, no manifest)
    promoted: bool = False
    metric: dict[str, Any] | None = None  # {"name": ..., "value": ...} best/eval metric when known
    mtime: float | None = None

    def add_problem(self, text: str) -> None:
        self.problems.append(text)
        self.complete = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Inspection:
    """``ckpt-tui inspect``: everything ``ls`` says plus the detail panes."""

    info: CheckpointInfo
    config: dict[str, Any] | None = None
    tokenizer: dict[str, Any] | None = None
    weights: dict[str, Any] | None = None
    trainer_state: dict[str, Any] | None = None
    files: list[dict[str, Any]] = field(default_factory=list)  # [{"path", "size_bytes"}]
    manifest: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out = self.info.to_json()
        out.update(
            config=self.config,
            tokenizer=self.tokenizer,
            weights=self.weights,
            trainer_state=self.trainer_state,
            files=self.files,
            manifest=self.manifest,
        )
        return out
