"""Never die of a full disk in the middle of a save (docs/TRAINER.md, "Disk space").

Before each save rank 0 compares the free space of the output filesystem with what the save is about to
write: the previous checkpoint of the same kind x 1.1, or for the first one an estimate from the
parameter count, dtypes and the optimizer. If that is short it first removes the step checkpoints that
keep_last would remove after this save anyway (never the best, never the newest complete one); if it is
still short the run stops cleanly (every rank gets the same DiskFullError, the committed checkpoints stay,
the run is resumable) instead of writing half a checkpoint.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tui.core import commit as protocol
from tui.core.du import mount_point
from tui.core.names import STEP_DIR
from tui.core.text import format_bytes

HEADROOM = 1.1  # a save may differ a little from the previous one (log history, tokenizer, metadata)
ADAM_BYTES_PER_PARAM = 12  # fp32 master/partition + exp_avg + exp_avg_sq, as DeepSpeed and torch save them
# Test seam, and only that: "save_state", "train_state", "weights", "manifest"... makes write_point(name)
# raise OSError(ENOSPC) there, as a full disk would (tests/trainer/test_disk_guard.py). Never set it.
FAIL_WRITE_ENV = "CKPT_TUI_TEST_FAIL_WRITE"

DiskUsage = Callable[[str], Any]  # shutil.disk_usage's signature; tests pass a fake


class DiskFullError(OSError):
    """Not enough space for the next save; one line, "disk full: need X, free Y on <mount>"."""


def write_point(name: str) -> None:
    """Called before each write of a save; raises ENOSPC only when the test seam names this point."""
    if os.environ.get(FAIL_WRITE_ENV) == name:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)


def committed_bytes(folder: Path) -> int | None:
    """Bytes a committed checkpoint folder holds, from its manifest (no walk); None when it has none."""
    try:
        manifest = protocol.read_manifest(folder)
    except protocol.ManifestError:
        return None
    if manifest is None:
        return None
    size = sum(meta["size"] for meta in manifest["files"].values())
    try:
        size += (Path(folder) / protocol.MANIFEST_NAME).stat().st_size
    except OSError:
        pass
    return size


def parameter_count(model) -> tuple[int, int, int]:
    """(parameters, trainable ones, bytes per parameter) of ``model``; ZeRO-3 partitioned parameters
    (an empty tensor of the right dtype on each rank) count in full through DeepSpeed's ``ds_numel``."""
    count, trainable, itemsize = 0, 0, 4
    for p in model.parameters():
        n = int(getattr(p, "ds_numel", 0) or p.numel())
        count += n
        trainable += n if p.requires_grad else 0
        itemsize = p.element_size()
    return count, trainable, itemsize


def estimate_step_bytes(params: int, trainable: int, itemsize: int) -> int:
    """A first resumable checkpoint: the weights in their dtype plus Adam's fp32 state per trainable one."""
    return params * itemsize + trainable * ADAM_BYTES_PER_PARAM


def estimate_model_bytes(params: int, itemsize: int) -> int:
    return params * itemsize


def need_bytes(previous: int | None, estimate: int) -> int:
    return int((previous if previous is not None else estimate) * HEADROOM)


def prunable_now(committed: dict[int, Path], step: int, best_step: int | None, keep_last: int) -> list[Path]:
    """Step checkpoints that pruning after saving ``step`` would remove anyway, oldest first: never the
    best, never the newest complete one (the save may still fail, and then it is what a resume needs)."""
    from trainer.checkpoint import select_to_keep

    keep = select_to_keep([*committed, step], best_step, keep_last)
    if committed:
        keep.add(max(committed))
    return [path for s, path in sorted(committed.items()) if s not in keep]


class DiskGuard:
    """Rank 0's check before a save; ``disk_usage`` is shutil.disk_usage (a fake in tests)."""

    def __init__(self, min_free_bytes: int = 0, disk_usage: DiskUsage = shutil.disk_usage):
        self.min_free_bytes = min_free_bytes
        self.disk_usage = disk_usage

    def free(self, folder: Path) -> int:
        return int(self.disk_usage(str(mount_point(folder))).free)

    def ensure(self, folder: Path, need: int, removable: Iterable[Path] = (), remove=None) -> list[Path]:
        """Make room for ``need`` bytes (+ the margin) under ``folder``, removing from ``removable`` (oldest
        first) only while short; returns what was removed. Raises DiskFullError when still short."""
        removed: list[Path] = []
        wanted = need + self.min_free_bytes
        free = self.free(folder)
        for path in removable:
            if free >= wanted:
                break
            (remove or shutil.rmtree)(path)
            removed.append(path)
            free = self.free(folder)
        if free < wanted:
            margin = (
                f" (incl. train.min_free_gb {format_bytes(self.min_free_bytes)})"
                if self.min_free_bytes
                else ""
            )
            raise DiskFullError(
                f"disk full: need {format_bytes(wanted)}{margin}, free {format_bytes(free)} on "
                f"{mount_point(folder)}"
            )
        return removed


def previous_step_bytes(committed: dict[int, Path]) -> int | None:
    """Size of the newest committed step checkpoint of the fold (the same kind of save)."""
    for step in sorted(committed, reverse=True):
        size = committed_bytes(committed[step])
        if size is not None:
            return size
    return None


def previous_step_bytes_in_run(checkpoints: Path) -> int | None:
    """The newest committed step checkpoint of any fold: a fold's first save sizes like the last fold's."""
    newest: tuple[int, int] | None = None  # (mtime, size)
    for child in checkpoints.glob("fold_*/step_*"):
        if STEP_DIR.match(child.name) and (size := committed_bytes(child)) is not None:
            mtime = child.stat().st_mtime_ns
            if newest is None or mtime > newest[0]:
                newest = (mtime, size)
    return newest[1] if newest is not None else None


def write_failure(name: str, code: int | None, text: str, folder: Path) -> OSError:
    """What every rank raises when writing ``name`` failed: DiskFullError (with the free space left)
    for ENOSPC/EDQUOT, else an OSError naming the save."""
    if code in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = format_bytes(shutil.disk_usage(folder).free)
        except OSError:
            free = "?"
        return DiskFullError(
            f"disk full: writing {name} failed ({text}); free {free} on {mount_point(folder)}"
        )
    return OSError(f"writing {name} failed: {text}")


def run_json_error(error: BaseException) -> str:
    """run.json's "error" for a failure: a DiskFullError's own line, else "Type: first line"."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if isinstance(error, DiskFullError) else f"{type(error).__name__}: {text}"
