"""What the app's thread workers do: disk work through ``tui.core``, returning plain data for the worker
to post. No widgets and no app state here: a task gets everything it needs as arguments (the checkpoint
records as a snapshot taken on the UI thread).

The core is imported inside the tasks, so the app's first paint never waits for it (nor for pandas).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.app import rows
from tui.core.model import CheckpointInfo, Inspection, folder_of_run
from tui.core.names import LOCK_FILE, SKIP_DIRS

if TYPE_CHECKING:
    from tui.core.actions import Plan, PlanAction
    from tui.core.du import FreeSpace
    from tui.core.subscan import Subscan
    from tui.core.trash import TrashEntry

MAX_WATCHED_DIRS = 20_000  # bounds the cost of one poll on a huge tree
MAX_WATCHED_FILES = 2_000  # files of the checkpoints on screen whose size/mtime a poll compares
DEFAULT_PRUNE_METRIC = "loss"
BATCH_INTERVAL = 0.05  # seconds of scanning the first scan batch holds; it doubles batch after batch
LONGEST_BATCH_INTERVAL = 0.8  # ... up to this: rows keep arriving while a long scan runs
LARGEST_BATCH = 2_000  # rows: the UI thread shows them in ~0.1 s


def tree_signature(root: Path, *, watched: tuple[str, ...] = (), limit: int = MAX_WATCHED_DIRS) -> int:
    """A hash of (folder, mtime) for folders under ``root``: creating, renaming or removing an entry
    anywhere changes a folder mtime, so equal signatures mean no rescan is needed. Bounded by ``limit``.

    A file rewritten or truncated in place changes no folder: the files directly in each ``watched``
    checkpoint (paths relative to ``root``: the ones on screen) add (size, mtime, ctime, inode)."""
    parts: list[tuple[str, int]] = [*_watched_files(root, watched)]
    stack = [os.fspath(root)]  # plain strings: this walks every folder at every poll
    while stack and len(parts) < limit:
        folder = stack.pop()
        try:
            parts.append((folder, os.stat(folder).st_mtime_ns))
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name in SKIP_DIRS:  # what the scan never enters cannot change its result
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            parts.append((folder, -1))
    return hash(tuple(sorted(parts)))


def _watched_files(root: Path, watched: tuple[str, ...]) -> Iterator[tuple[str, int]]:
    count = 0
    for rel in watched:
        path = os.path.join(root, rel)
        try:
            if os.path.isdir(path):
                with os.scandir(path) as it:
                    entries = [(e.path, e.stat()) for e in it if e.is_file()]
            else:
                entries = [(path, os.stat(path))]
        except OSError:
            yield rel, -1
            continue
        for name, st in entries:
            yield name, hash((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
            count += 1
        if count >= MAX_WATCHED_FILES:
            return


def live_runs(root: Path, runs: Iterable[str]) -> dict[str, str]:
    """The runs (paths relative to ROOT) whose ``.lock`` a live trainer holds, with who holds it. Judged
    at every poll: a trainer killed with -9 leaves its lock behind, and only the pid or the heartbeat
    says it is gone."""
    from tui.core.process import read_lock

    live = {}
    for run in runs:
        holder = read_lock(root / run / LOCK_FILE)
        if holder is not None and holder.live:
            live[run] = holder.why
    return live


def free_space(root: Path) -> FreeSpace | None:
    """Free space of ROOT's filesystem for the status line; None when the filesystem will not say."""
    from tui.core.du import free_space as ask

    try:
        return ask(root)
    except OSError:
        return None


def start_first_scan(root: Path) -> Subscan | None:
    """The app's first scan, started at once in a process of its own (``tui.core.subscan``: it reads on
    every core, where the app's threads share one), or None where one process reads anyway or a snapshot
    of ROOT may answer (the app replays it in a fraction of a child's start)."""
    from tui.core import snapshot
    from tui.core.forked import default_processes

    if default_processes() <= 1 or snapshot.remembered(root):
        return None
    from tui.core import subscan

    try:
        return subscan.Subscan(root)
    except subscan.SubscanFailed:
        return None


def scan_batches(
    root: Path, *, cancelled: Callable[[], bool], first: Subscan | None = None
) -> Iterator[list[CheckpointInfo]]:
    """The records under ROOT in batches; ``first``: the app's first scan, running in a process of its own."""
    from tui.core.snapshot import iter_checkpoints

    infos = _from_child(first, root, cancelled) if first is not None else iter_checkpoints(root, cancelled=cancelled)
    yield from batched(infos, cancelled=cancelled)


def _from_child(first: Subscan, root: Path, cancelled: Callable[[], bool]) -> Iterator[CheckpointInfo]:
    from tui.core.snapshot import iter_checkpoints
    from tui.core.subscan import SubscanFailed

    try:
        yield from first.records(cancelled=cancelled)
        return
    except SubscanFailed:
        pass  # read here: what the child sent already comes again, and the store takes it as an update
    yield from iter_checkpoints(root, cancelled=cancelled)


def save_cache() -> None:
    """Write what a scan read to the summary cache: the next ``ckpt-tui`` (or this app's next start)
    reads it instead of the files."""
    from tui.core import cache

    cache.shared().flush()


def inspect(root: Path, path: str) -> Inspection:
    from tui.core.inspect import inspect_path

    return inspect_path(root, root / path)


def prune_metric(infos: list[CheckpointInfo], chosen: str | None) -> str:
    """``chosen`` (--metric), else the metric most checkpoints of the run report (ties: by name)."""
    if chosen:
        return chosen
    names = sorted(i.metric.name for i in infos if i.metric and i.metric.name)
    return max(names, key=names.count) if names else DEFAULT_PRUNE_METRIC


def metric_choices(infos: list[CheckpointInfo]) -> list[str]:
    """The metrics prune can rank this run by: those its checkpoints report, most reported first."""
    names = [i.metric.name for i in infos if i.metric and i.metric.name]
    return sorted(set(names), key=lambda n: (-names.count(n), n)) or [DEFAULT_PRUNE_METRIC]


def plan(
    root: Path,
    action: PlanAction,
    paths: list[str],
    infos: list[CheckpointInfo],
    keep: int = 2,
    metric: str | None = None,
    mode: str | None = None,
) -> Plan:
    """The plan the confirmation modal shows: ``paths`` are checkpoints (delete, slim), the run (prune)
    or trash entry ids (trash-empty; none: every entry). Prune is ``ckpt-tui prune``'s plan, over the run."""
    from tui.core import actions

    if action == "delete":
        return actions.plan_delete(root, paths, infos)
    if action == "slim":
        return actions.plan_slim(root, paths, infos)
    if action == "prune":
        return actions.plan_prune(root, infos, keep, prune_metric(infos, metric), mode=mode)
    return actions.plan_trash_empty(root, paths or None)


def execute(plan: Plan) -> tuple[bool, str]:
    """(ok, the one-paragraph summary) of carrying out a confirmed plan."""
    from tui.core import actions

    result = actions.execute(plan, origin="app")
    return result.ok, result.summary


def undo_last(root: Path) -> tuple[bool, str]:
    from tui.core import actions

    result = actions.undo_last(root)
    return result.ok, result.summary


def trash_entries(root: Path) -> list[TrashEntry]:
    """The trash under ROOT, newest first."""
    from tui.core.trash import Trash

    return Trash(root).list()[::-1]


def restore(root: Path, entry_id: str) -> tuple[bool, str]:
    from tui.core import actions

    result = actions.restore(root, entry_id)
    return result.ok, result.summary


# What each slow step of a conversion is, in the words the app shows while it runs.
CONVERT_STAGES = {
    "consolidate_zero": "consolidating the ZeRO shards",
    "consolidate_dcp": "consolidating the DCP shards",
    "merge_lora": "merging the LoRA adapter into its base",
    "bin_to_safetensors": "converting pytorch_model.bin to safetensors",
    "verify_reload": "reloading the export to check it",
    "verify_dcp": "checking every tensor against the source",
}


class ReportingConverter:
    """The converter the CLI injected (``tui.convert``), saying which slow step starts before it runs."""

    def __init__(self, convert: Any, progress: Callable[[str], None]) -> None:
        self._convert, self._progress = convert, progress

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._convert, name)
        stage = CONVERT_STAGES.get(name)
        if stage is None or not callable(value):
            return value

        def run(*args: Any, **kwargs: Any) -> Any:
            self._progress(stage)
            return value(*args, **kwargs)

        return run


def promote(
    root: Path,
    path: str,
    target: str | None,
    infos: list[CheckpointInfo],
    *,
    convert: Any = None,
    base: str | None = None,
    progress: Callable[[str], None] = lambda stage: None,
) -> tuple[bool, str]:
    """Export ``path``; a relative ``target`` or ``base`` is relative to ROOT (what the user sees), not to
    where the app was started. ``convert`` (``tui.convert``, injected by the CLI) does ZeRO / LoRA / .bin /
    DCP conversions; without it a conversion is refused with the CLI command to run."""
    from tui.core.promote import promote as export

    def under_root(given: str | None) -> Path | None:
        return None if not given else (Path(given) if Path(given).is_absolute() else root / given)

    progress("copying files")
    converter = ReportingConverter(convert, progress) if convert is not None else None
    result = export(root, root / path, under_root(target), infos=infos, convert=converter, base=under_root(base))
    text = f"Promoted {result.source} -> {result.target} ({len(result.files)} files"
    text += f", {result.conversion} conversion" if result.conversion else ""
    text += ", checked by reloading it)." if result.verified else ")."
    if result.problems:
        text += " Problems: " + "; ".join(result.problems)
    return not result.problems, text


def diff(root: Path, left: str, right: str) -> tuple[list[tuple[str, Any, Any]], list[tuple[str, str, str]]]:
    """(config differences, tensor differences) between two checkpoints: the whole config files and
    tensor tables (tui.core.diff), as display rows."""
    from tui.core.diff import diff_checkpoints

    found = diff_checkpoints(root / left, root / right, names=(left, right))
    return rows.config_rows(found.config), rows.tensor_rows(found.tensors)


def fold_metrics(root: Path, run: str) -> dict[str, Any]:
    from tui.core.metrics import compute_metrics

    folder = folder_of_run(run)
    return compute_metrics(root / folder if folder != "." else root)


def batched(
    items: Iterator[CheckpointInfo],
    *,
    interval: float = BATCH_INTERVAL,
    longest: float = LONGEST_BATCH_INTERVAL,
    most: int = LARGEST_BATCH,
    clock: Callable[[], float] = time.monotonic,
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[list[CheckpointInfo]]:
    """Group streamed infos so one message carries many rows: what arrived in the first ``interval``
    seconds, then in intervals doubling up to ``longest`` (a row arriving after its batch was due goes at
    once: a slow start still shows its first row), and never more than ``most`` rows (the UI thread
    takes ~50 ms per 1,000 rows and answers no key meanwhile). Each batch costs the UI thread a table
    update and a repaint whatever its size, and a busy UI thread slows the scan thread (the GIL): a scan
    that a snapshot answers in a few milliseconds is one batch, a long one a handful, never one per row."""
    batch: list[CheckpointInfo] = []
    due = clock() + interval
    for info in items:
        if cancelled():
            return
        batch.append(info)
        if clock() < due and len(batch) < most:
            continue
        yield batch
        batch = []
        interval = min(interval * 2, longest)
        due = clock() + interval
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
