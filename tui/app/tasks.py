"""Disk-side helpers the app's thread workers call. No widgets: they return data, workers post it."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from tui.core.model import CheckpointInfo
from tui.core.names import SKIP_DIRS

MAX_WATCHED_DIRS = 20_000  # bounds the cost of one poll on a huge tree


def tree_signature(root: Path, *, limit: int = MAX_WATCHED_DIRS) -> int:
    """A hash of (folder, mtime) for folders under ``root``: creating, renaming or removing an entry
    anywhere changes a folder mtime, so equal signatures mean no rescan is needed. Bounded by ``limit``."""
    parts: list[tuple[str, int]] = []
    stack = [Path(root)]
    while stack and len(parts) < limit:
        folder = stack.pop()
        try:
            parts.append((str(folder), os.stat(folder).st_mtime_ns))
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name in SKIP_DIRS:  # what the scan never enters cannot change its result
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
        except OSError:
            parts.append((str(folder), -1))
    return hash(tuple(sorted(parts)))


def batched(
    items: Iterator[CheckpointInfo], *, size: int = 64, cancelled: Callable[[], bool] = lambda: False
) -> Iterator[list[CheckpointInfo]]:
    """Group streamed infos so one message carries many rows; the first batch is small for a fast paint."""
    batch: list[CheckpointInfo] = []
    limit = min(8, size)
    for info in items:
        if cancelled():
            return
        batch.append(info)
        if len(batch) >= limit:
            yield batch
            batch = []
            limit = size
    if batch and not cancelled():
        yield batch


def one_line(error: BaseException, root: Path | str | None = None) -> str:
    """What the user reads about ``error``: its first line, with paths under ``root`` relative to it.

    The core's own errors (and ValueError / OSError, which it raises for bad files) already say what and
    where, so their class name is noise. Anything else is a bug: its class name stays, to be reported."""
    if isinstance(error, OSError) and error.strerror:
        text = f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    else:
        lines = str(error).strip().splitlines()
        text = lines[0].strip() if lines else ""
    if root is not None:
        text = relative_to_root(text, root)
    expected = isinstance(error, (OSError, ValueError)) or type(error).__module__.startswith("tui.")
    if not text:
        return f"unexpected {type(error).__name__}"
    return text if expected else f"{text} ({type(error).__name__})"


def relative_to_root(text: str, root: Path | str) -> str:
    """``text`` with every absolute spelling of ``root`` (as given, absolute, resolved) made relative."""
    bases = {os.path.abspath(root), os.path.realpath(root), str(root)} - {"", "."}
    for base in sorted(bases, key=len, reverse=True):
        base = base.rstrip("/") or "/"
        text = text.replace(base + "/", "") if base != "/" else text
        text = re.sub(re.escape(base) + r"(?=$|[\s:'\",)])", ".", text)
    return text
