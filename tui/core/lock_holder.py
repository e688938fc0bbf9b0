"""``LockHolder``, the verdict on a run's ``.lock`` (tui.core.process judges it, and re-exports it); kept
apart so that a command that judges no lock does not create this dataclass."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LockHolder"]


@dataclass(frozen=True)
class LockHolder:
    """Who holds a run lock and whether it still counts. ``why`` completes "the run is ..." in one line."""

    pid: int | None
    host: str | None
    live: bool
    why: str
