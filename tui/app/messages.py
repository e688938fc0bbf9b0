"""Messages that thread workers post to the app. Workers never touch widgets; handlers do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual.message import Message

from tui.core.model import CheckpointInfo, Inspection

if TYPE_CHECKING:
    from tui.core.actions import Plan, PlanAction
    from tui.core.du import FreeSpace


@dataclass
class ScanBatch(Message):
    """A batch of checkpoints found by scan ``generation`` (batched so a big tree is not a message flood)."""

    generation: int
    infos: list[CheckpointInfo]


@dataclass
class ScanDone(Message):
    """Scan ``generation`` finished; ``seen`` holds every path it reported (rows not in it are gone)."""

    generation: int
    seen: set[str]
    error: str | None = None
    skipped: bool = False  # no rows with it: a poll found nothing changed, or the live state after a scan
    live: dict[str, str] | None = None  # run -> who holds its .lock, for runs a live trainer writes
    free: FreeSpace | None = None  # ROOT's filesystem, asked at each scan and poll


@dataclass
class InspectionReady(Message):
    """The detail of ``path`` (or the one-line reason it could not be read)."""

    path: str
    inspection: Inspection | None
    error: str | None = None


@dataclass
class PlanReady(Message):
    """A planned destructive action, ready for the confirmation modal."""

    action: PlanAction
    plan: Plan | None
    error: str | None = None


@dataclass
class ActionDone(Message):
    """A disk action finished: ``text`` is shown to the user; ``ok`` False shows it as an error."""

    action: str
    ok: bool
    text: str
    changed_disk: bool = True
    path: str | None = None  # promote: the checkpoint promoted


@dataclass
class PromoteProgress(Message):
    """A promote of ``path`` started its next slow step (``stage``, in words)."""

    path: str
    stage: str


@dataclass
class MetricsReady(Message):
    run: str
    metrics: dict[str, Any] | None
    error: str | None = None


@dataclass
class DiffReady(Message):
    left: str
    right: str
    config_diff: list[tuple[str, Any, Any]] = field(default_factory=list)
    tensor_diff: list[tuple[str, str, str]] = field(default_factory=list)
    error: str | None = None
