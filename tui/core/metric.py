"""``Metric``, a checkpoint's own evaluation (``CheckpointInfo.metric``); kept apart from tui.core.model
(which re-exports it) so that a command reading checkpoints without one does not create this dataclass."""

from __future__ import annotations

from dataclasses import dataclass

from tui.core.files import json_int, json_number
from tui.core.text import bare_metric_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Metric"]


@dataclass(frozen=True)
class Metric:
    """A checkpoint's own evaluation, ``{"name", "value", "step"}`` in JSON; ``name`` None when the files
    hold a value without saying what it measures; ``step`` the optimizer step it was evaluated at (None
    when the files do not say). A resumable checkpoint's metric is its last evaluation at or before its
    step, never the best so far (that one is marked by ``CheckpointInfo.best``)."""

    name: str | None
    value: float
    step: int | None = None

    @classmethod
    def of(cls, name: object, value: object, step: object = None) -> Metric | None:
        """A Metric from values read off disk; None unless ``value`` is a number (a bool is not)."""
        value = json_number(value)
        if value is None:
            return None
        step = json_int(step)
        return cls(
            name if isinstance(name, str) else None, value, step if step is not None and step >= 0 else None
        )

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "step": self.step}

    def same_name(self, other: str) -> bool:
        """``eval_loss`` and ``loss`` name the same metric (HF prefixes eval metrics with ``eval_``)."""
        return self.name is not None and bare_metric_name(self.name) == bare_metric_name(other)
