"""Where the bytes under ROOT are, and how much room its filesystem has left (``ckpt-tui du``, the app's
free-space note, the trainer's disk guard).

Every file under ROOT is counted once (symlinks are never followed; a link counts as nothing) and sorted
into a run and a kind. A run is the nearest folder holding run.json, else the first folder below ROOT
("." for files at ROOT itself). Kinds: ``optimizer`` for what only a resume needs (the files ``slim``
drops: optimizer, scheduler, scaler, RNG states, ZeRO optimizer shards), ``weights`` (safetensors, weight
pickles, ZeRO model states, DCP shards), ``trash`` (everything under ROOT/.ckpt-trash, not in any run) and
``other`` (configs, tokenizers, CSVs, logs).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui.core.actions import WEIGHT_PATTERNS, slim_label
from tui.core.files import FULL_WALK_DEPTH, walk
from tui.core.names import MP_MODEL_STATES, RUN_FILE, TRASH_DIR, ZERO_RANK_SHARD

KINDS = ("weights", "optimizer", "other")
LOW_FREE_FRACTION = 0.10  # the app warns below this share of the filesystem free
_WEIGHT_SUFFIXES = (".distcp", ".pt", ".pth", ".ckpt", ".bin")


@dataclass(frozen=True)
class FreeSpace:
    mount: str
    total_bytes: int
    free_bytes: int

    @property
    def free_fraction(self) -> float:
        return self.free_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def low(self) -> bool:
        return self.free_fraction < LOW_FREE_FRACTION

    def to_json(self) -> dict[str, Any]:
        return {
            "mount": self.mount,
            "total_bytes": self.total_bytes,
            "free_bytes": self.free_bytes,
            "free_fraction": round(self.free_fraction, 4),
        }


def mount_point(path: Path | str) -> Path:
    """The mount point of the filesystem holding ``path`` (or its nearest existing parent)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def free_space(path: Path | str, disk_usage=shutil.disk_usage) -> FreeSpace:
    """Free and total bytes of the filesystem holding ``path`` (OSError when it cannot be asked)."""
    mount = mount_point(path)
    usage = disk_usage(str(mount))
    return FreeSpace(str(mount), int(usage.total), int(usage.free))


def kind_of(name: str) -> str:
    """``weights``, ``optimizer`` or ``other`` for a file name (see the module docstring)."""
    if slim_label(name) is not None:
        return "optimizer"
    if (
        any(fnmatch.fnmatchcase(name, p) for p in WEIGHT_PATTERNS)
        or MP_MODEL_STATES.match(name)
        or ZERO_RANK_SHARD.match(name)
        or name.endswith(_WEIGHT_SUFFIXES)
    ):
        return "weights"
    return "other"


@dataclass
class RunUsage:
    run: str
    bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    @property
    def total(self) -> int:
        return sum(self.bytes.values())

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, **{f"{k}_bytes": v for k, v in self.bytes.items()}, "total_bytes": self.total}


@dataclass
class DiskReport:
    root: str
    runs: list[RunUsage]
    trash_bytes: int
    free: FreeSpace | None
    problems: list[str] = field(default_factory=list)  # folders that could not be read, one line each

    def totals(self) -> dict[str, int]:
        out = {k: sum(r.bytes[k] for r in self.runs) for k in KINDS}
        out["trash"] = self.trash_bytes
        out["total"] = sum(out.values())
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "filesystem": self.free.to_json() if self.free is not None else None,
            "totals": {f"{k}_bytes": v for k, v in self.totals().items()},
            "runs": [r.to_json() for r in self.runs],
            "problems": self.problems,
        }


def disk_report(root: Path | str, *, disk_usage=shutil.disk_usage) -> DiskReport:
    """Bytes per run and kind under ``root``, biggest run first, and the free space of its filesystem."""
    root = Path(root)
    runs: dict[str, RunUsage] = {}
    problems: list[str] = []
    trash_bytes = _walk(root / TRASH_DIR, problems) if (root / TRASH_DIR).is_dir() else 0
    for rel, name, size in _files(root, problems):
        run = runs.setdefault(rel, RunUsage(rel))
        run.bytes[kind_of(name)] += size
    try:
        free = free_space(root, disk_usage)
    except OSError as e:
        free = None
        problems.append(f"{root}: free space unknown ({e.strerror or e})")
    ordered = sorted(runs.values(), key=lambda r: (-r.total, r.run))
    return DiskReport(str(root), ordered, trash_bytes, free, problems)


def _files(root: Path, problems: list[str]):
    """(run, file name, bytes) of every file under ``root`` outside the trash."""
    stack: list[tuple[Path, str | None]] = [(root, None)]
    while stack:
        folder, run = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as e:
            problems.append(f"{folder}: unreadable ({e.strerror or e})")
            continue
        names = {e.name for e in entries}
        if RUN_FILE in names and folder != root:
            run = folder.relative_to(root).as_posix()
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if folder == root and entry.name == TRASH_DIR:
                        continue
                    stack.append((Path(entry.path), run if run is not None or folder != root else entry.name))
                elif entry.is_file(follow_symlinks=False):
                    yield run if run is not None else ".", entry.name, entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue


def _walk(folder: Path, problems: list[str]) -> int:
    """Bytes of the files under ``folder``; symlinks neither followed nor counted."""
    total = 0
    unreadable: list[str] = []
    for dirpath, _dirs, files in walk(folder, max_depth=FULL_WALK_DEPTH, unreadable=unreadable):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if not stat.S_ISLNK(st.st_mode):
                total += st.st_size
    problems += [f"{path}: unreadable" for path in unreadable]
    return total
