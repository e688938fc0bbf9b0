"""The app's model: every checkpoint the scan reported, the inspections read so far, and the marks.

Only the UI thread changes it (message handlers); widgets render it; a worker gets a ``snapshot()``, a
list taken on the UI thread, so a scan batch arriving meanwhile cannot change what the worker iterates.
Records are replaced, never changed in place, so a snapshot stays consistent.
"""

from __future__ import annotations

from collections.abc import Iterable

from tui.core.model import CheckpointInfo, Inspection, run_of


class CheckpointStore:
    def __init__(self) -> None:
        self.infos: dict[str, CheckpointInfo] = {}  # by path, relative to ROOT
        self.inspections: dict[str, Inspection] = {}  # by path; dropped when the checkpoint changes
        self.marked: list[str] = []  # paths marked (diff takes two, delete takes all), oldest first
        self.live: dict[str, str] = {}  # run -> who holds its .lock (a trainer writing it now)

    def upsert(self, infos: Iterable[CheckpointInfo]) -> list[tuple[CheckpointInfo | None, CheckpointInfo]]:
        """Store ``infos``; returns (previous record or None, new record) for each one that is new or
        changed. A changed checkpoint's inspection is dropped: it no longer describes it."""
        changed = []
        for info in infos:
            old = self.infos.get(info.path)
            if old == info:
                continue
            self.infos[info.path] = info
            cached = self.inspections.get(info.path)
            if cached is not None and cached.info != info:
                del self.inspections[info.path]
            changed.append((old, info))
        return changed

    def forget(self, paths: Iterable[str]) -> list[CheckpointInfo]:
        """Drop checkpoints that are gone from disk; returns the records dropped."""
        gone = []
        for path in paths:
            info = self.infos.pop(path, None)
            if info is None:
                continue
            gone.append(info)
            self.inspections.pop(path, None)
            if path in self.marked:
                self.marked.remove(path)
        return gone

    def snapshot(self) -> list[CheckpointInfo]:
        """Every checkpoint, as a list a worker thread may iterate while the UI thread goes on."""
        return list(self.infos.values())

    def runs(self) -> set[str]:
        return {run_of(i) for i in self.infos.values()}

    def of_run(self, run: str) -> list[CheckpointInfo]:
        return [i for i in self.infos.values() if run_of(i) == run]

    def toggle_mark(self, path: str) -> bool:
        """Mark or unmark ``path``; True when it is marked now."""
        if path in self.marked:
            self.marked.remove(path)
            return False
        self.marked.append(path)
        return True

    def clear_marks(self) -> list[str]:
        """Unmark everything; returns what was marked."""
        cleared, self.marked = self.marked, []
        return cleared
