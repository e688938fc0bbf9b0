"""The reads a scan defers: one checkpoint folder (``FolderRead``), one loose file (``FileRead``).

The walk (``tui.core.scan``) lists, stats and classifies; these open the files (headers, pickles, JSON side
files) when ``finish()`` runs, later and maybe elsewhere: on a pool thread (``tui.core.pool``) or in a
reader process forked before the walk reached them (``tui.core.forked``), which is handed them pickled.
So they hold only what the walk found (paths, sizes, the walk's stat keys, the run's lock, the record
so far) and pickle small. The scan they belong to pickles as a reference to the reader's own copy of it
(``tui.core.scan._Scan.__reduce__``); what that copy cannot know, because the walk learnt it after the
reader was forked (which trainer_state files decide the best checkpoint of a folder), travels with them.
"""

from __future__ import annotations

import os
from pathlib import Path

from tui.core import cache, integrity
from tui.core.mindspore_ckpt.runs import FolderReports, name_role
from tui.core.model import CheckpointInfo, Kind
from tui.core.process import uncommitted_problem

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

    from tui.core.marks import RunContext


class FolderRead:
    """One checkpoint folder (and the checkpoints nested in it) as the walk found it; ``finish()`` reads it."""

    __slots__ = ("scan", "path", "kind", "run", "info", "files", "stats", "problems", "nested", "leftover")

    def __init__(
        self,
        scan: Any,  # the tui.core.scan._Scan it belongs to (marks, read log)
        path: str,
        kind: Kind,
        run: RunContext | None,
        info: CheckpointInfo,
        files: dict[str, int],  # relative path -> size, nested checkpoints' files included
        stats: dict[str, tuple[int, int, int, int, int]],  # absolute path -> cache.walk_key
        problems: list[str],
        nested: list[tuple[str, Kind, CheckpointInfo, dict[str, int]]],  # path, kind, record, files
        leftover: bool,  # .<name>.tmp / .<name>.old of an interrupted commit
    ) -> None:
        self.scan, self.path, self.kind, self.run, self.info = scan, path, kind, run, info
        self.files, self.stats, self.problems, self.nested, self.leftover = (
            files,
            stats,
            problems,
            nested,
            leftover,
        )

    def __reduce__(self):
        marks = self.scan.marks
        folders = {os.path.dirname(os.path.normpath(p)) for p in (self.path, *(n[0] for n in self.nested))}
        deciders = {f: marks.deciders[f] for f in folders if f in marks.deciders}
        return _folder_read, (deciders, self.scan, self.path, self.kind, self.run, self.info, self.files,
                              self.stats, self.problems, self.nested, self.leftover)  # fmt: skip

    def finish(self) -> list[CheckpointInfo]:
        with cache.known_stats(self.stats):  # the cache keys come from the walk's stats: no second stat
            return self._check()

    def _check(self) -> list[CheckpointInfo]:
        marks, info, run, log = self.scan.marks, self.info, self.run, self.scan.log
        # Marked here, by the reader: judging best parses trainer_state.json files, which the walk never does.
        marks.mark_best(info, self.path, self.kind, self.files)
        for sub_path, sub_kind, sub_info, sub_files in self.nested:
            marks.mark_best(sub_info, sub_path, sub_kind, sub_files)
        for problem in self.problems:
            info.add_problem(problem)
        manifest = integrity.check_folder(
            info, Path(self.path), set(self.files), self.kind, trainer_state=marks.trainer_state
        )
        if self.leftover:
            info.in_progress = True
            info.add_problem(
                f"{os.path.basename(self.path)}: leftover of an interrupted commit; safe to delete once no trainer runs"
            )
        elif run is not None and manifest is None and not info.promoted:
            info.in_progress = True
            info.add_problem(uncommitted_problem(run.lock))
            if run.lock is not None and run.lock_path is not None and log is not None:
                log.lock_lines.append((run.lock_path, info, len(info.problems) - 1))  # judged again on replay
        out = [info]
        for sub_path, sub_kind, sub_info, sub_files in self.nested:
            try:
                sub_info.mtime = os.stat(sub_path).st_mtime
            except OSError:
                sub_info.mtime = None
            integrity.check_folder(
                sub_info, Path(sub_path), set(sub_files), sub_kind, trainer_state=marks.trainer_state
            )
            # A nested checkpoint is committed (or not) with the folder that holds it.
            sub_info.in_progress = info.in_progress
            sub_info.promoted = sub_info.promoted or info.promoted
            if sub_info.fold is None:
                sub_info.fold = info.fold
            out.append(sub_info)
        return out


def _folder_read(deciders: dict[str, tuple[list[str], list[str]]], scan: Any, *fields) -> FolderRead:
    """A FolderRead unpickled by a reader: the deciders the walk noted after the reader was forked, first."""
    for folder, decider in deciders.items():
        scan.marks.deciders.setdefault(folder, decider)
    return FolderRead(scan, *fields)


class FileRead:
    """One loose file as the walk found it; ``finish()`` reads it. ``mindspore``: the MindSpore files of its
    folder, read together when first needed; ``lightning``: which .ckpt of its folder Lightning's
    ModelCheckpoint calls best (both shared by the files of one folder read in one process)."""

    __slots__ = ("info", "path", "name", "mindspore", "lightning")

    def __init__(
        self,
        info: CheckpointInfo,
        path: str,
        name: str,
        mindspore: FolderReports | None,
        lightning: integrity.LightningBest | None,
    ) -> None:
        self.info, self.path, self.name, self.mindspore, self.lightning = (
            info,
            path,
            name,
            mindspore,
            lightning,
        )

    def __reduce__(self):
        return FileRead, (self.info, self.path, self.name, self.mindspore, self.lightning)

    def finish(self) -> list[CheckpointInfo]:
        info, name = self.info, self.name
        found = self.mindspore.get(name) if self.mindspore is not None else None
        if found is None:
            integrity.check_file(info, Path(self.path))
            if info.kind == "lightning" and self.lightning is not None and self.lightning.get() == name:
                info.best = True
            return [info]
        report, sibling_problem = found
        info.kind = "mindspore"
        integrity.mindspore_into(info, report, [sibling_problem] if sibling_problem else [])
        info.best = name_role(name) == "best" and info.complete
        return [info]
