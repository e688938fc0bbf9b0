"""Walk a root and classify every checkpoint in it, streaming ``CheckpointInfo`` records as found.

The walk uses ``os.scandir`` once per folder and classifies a folder from the names it holds, so the
only extra system calls are one ``stat`` per folder entered (loop detection, mtime) and one per file
inside a checkpoint (``size_bytes``). Weight numbers come from safetensors headers and static pickle
scans, never from tensor data.

Rules worth knowing (docs/FORMAT.md has the on-disk contract):

- Never entered: ``.ckpt-trash``, ``.git``, ``node_modules``, ``__pycache__``, ``.venv``, our own cache folder; symlinked
  folders (outside the root they are not ours; inside it their target is reached by its real path); a
  folder already entered (by device and inode: bind mounts, hard-linked folders).
- A folder classified as a checkpoint is one unit: the files under it belong to it (``size_bytes``
  counts all of them, nested checkpoints included, i.e. what deleting it frees). Inside it only a few
  nested kinds are reported on their own, because each is usable without its parent:
  a PEFT adapter folder (``adapter/`` in a fold folder) and a DeepSpeed tag folder (``global_stepN``
  inside an HF ``checkpoint-N`` trained with DeepSpeed). Likewise the ``checkpoint-N`` folders inside a
  Trainer ``output_dir`` that ``save_model`` made an hf-model. The ``pytorch_model/`` ZeRO folder inside an
  accelerate ``save_state`` folder is part of that state and is not reported separately.
- Loose files outside checkpoint folders: ``.safetensors`` -> safetensors-file; ``.pt/.pth/.ckpt`` ->
  lightning or torch-pickle; a file of any other name (``.bin``, ``.pkl``, no suffix...) only when its
  first bytes are a torch zip or a pickle of any protocol (``pickle_scan.sniff``; ``data.bin`` files of
  datasets are not checkpoints); known non-pickle formats (``.json``, ``.csv``, images...) are not sniffed.
- Names with bytes that are not UTF-8 are kept with ``surrogateescape`` so that ``root / info.path``
  still opens the file; ``tui.core.text`` turns them into printable text (``safe_text`` for screens,
  ``json_safe`` for JSON).
- What the folders around a checkpoint say about it (its run and lock, promoted, best) is judged by
  ``tui.core.marks`` from the folders this walk lists.
"""

from __future__ import annotations

import itertools
import os
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from tui.core import cache, commit, integrity, readlog
from tui.core.classify import (
    classify_by_name,
    classify_folder,
    fold_from_path,
    looks_like_pickle,
    step_from_name,
)
from tui.core.files import MAX_WALK_DEPTH, allocated_bytes
from tui.core.marks import Marks, RunContext
from tui.core.mindspore_ckpt.runs import FolderReports
from tui.core.model import CheckpointInfo, Kind
from tui.core.names import (
    EPOCH_STEP_NAME,
    LIGHTNING_NAME_EPOCH,
    LIGHTNING_NAME_STEP,
    MINDSPORE_SUFFIX,
    RUN_FILE,
    SKIP_DIRS,
)
from tui.core.pickle_scan import sniff
from tui.core.pool import in_order as _resolved
from tui.core.pool import read_threads
from tui.core.scan_reads import FileRead, FolderRead

# Checkpoints reported on their own even inside another checkpoint folder (see the module docstring).
NESTED_KINDS: tuple[Kind, ...] = ("peft-adapter", "deepspeed", "hf-checkpoint")


# --- the walk -----------------------------------------------------------------------------------------


@dataclass(repr=False, eq=False)  # private: never printed nor compared, two methods fewer to compile
class _Listing:
    """One folder read with scandir: file name -> (size, mtime) filled lazily, subfolder entries."""

    path: str
    rel: str
    files: dict[str, os.DirEntry] = field(default_factory=dict)
    dirs: dict[str, os.DirEntry] = field(default_factory=dict)


@dataclass(repr=False, eq=False)  # private: never printed nor compared, two methods fewer to compile
class _Scan:
    root: str
    root_real: str
    cancelled: Callable[[], bool]
    errors: list[str]
    seen: set[tuple[int, int]] = field(default_factory=set)
    marks: Marks = field(init=False)
    log: readlog.ReadLog | None = None  # to remember this scan (tui.core.snapshot)

    def __post_init__(self) -> None:
        self.marks = Marks(self.root)
        self.token = next(_tokens)
        _scans[self.token] = self

    def __reduce__(self):
        # Pickled into a reader process forked from this one during the scan (tui.core.forked): the reads
        # handed to it refer to its own copy of the scan, never a copy made for each read.
        return _scan_of, (self.token,)

    def rel(self, path: str) -> str:
        # The walk only builds paths by joining names onto the root, so a prefix cut is exact (and
        # much cheaper than os.path.relpath, which re-normalises both paths every call).
        if path == self.root:
            return "."
        prefix = self.root if self.root.endswith(os.sep) else self.root + os.sep
        if path.startswith(prefix):
            return path[len(prefix) :].replace(os.sep, "/")
        return os.path.relpath(path, self.root).replace(os.sep, "/")


_tokens = itertools.count()
_scans: weakref.WeakValueDictionary[int, _Scan] = weakref.WeakValueDictionary()


def _scan_of(token: int) -> _Scan:
    return _scans[token]  # KeyError: not a reader forked during that scan; the reads go back to the walk


def iter_checkpoints(
    root: str | os.PathLike,
    *,
    cancelled: Callable[[], bool] = lambda: False,
    errors: list[str] | None = None,
    log: readlog.ReadLog | None = None,
    processes: int = 1,
) -> Iterator[CheckpointInfo]:
    """Every checkpoint under ``root``, yielded as soon as it is classified.

    ``cancelled`` is polled once per folder. Folders that cannot be read are skipped and described
    (one line each) in ``errors`` when a list is given. ``log``: the scan notes there what it cannot
    read again from files (lines quoting a run's lock) and whether the walk ran to its end
    (``tui.core.snapshot``, which remembers whole scans for browsing, passes one). ``processes`` > 1: a
    big root is walked first, then read by that many processes (``tui.core.forked``; never in the app).
    """
    root = os.path.abspath(os.fspath(root))
    state = _Scan(root, os.path.realpath(root), cancelled, errors if errors is not None else [])
    try:
        st = os.stat(root)
    except OSError as e:
        state.errors.append(f"{root}: {e.strerror or e}")
        return
    if not os.path.isdir(root):
        yield from _resolved(_loose_file(state, root, os.path.basename(root), None), threads=1)
        return
    state.seen.add((st.st_dev, st.st_ino))
    _skip_own_cache(state)
    state.log = log
    if readlog.noting():
        readlog.note(root, st)
    cache.shared().use_pack(root)  # one cache file for the whole root: read once, written once
    if processes > 1:
        yield from _in_processes(state, _visit(state, root, None, st.st_mtime), processes)
    else:
        yield from _resolved(_visit(state, root, None, st.st_mtime), threads=read_threads())
    if log is not None and not cancelled():
        log.finished = True


def _in_processes(
    state: _Scan, items: Iterator[FolderRead | FileRead], processes: int
) -> Iterator[CheckpointInfo]:
    from tui.core import forked

    def begin() -> tuple[int, int, int, int]:  # in a reader, before each chunk: what the parent has had
        cache.shared().hold_writes()
        cache.shared().forget_changes()
        log = state.log
        if log is None:
            return len(state.errors), 0, 0, 0
        return len(state.errors), len(log.seen), len(log.lookups), len(log.lock_lines)

    def export(results: list[CheckpointInfo], begun: tuple[int, int, int, int]) -> dict:
        log, where = state.log, {id(info): n for n, info in enumerate(results)}
        errors, seen, lookups, locks = begun
        return {
            "cache": cache.shared().changes(),
            "errors": state.errors[errors:],
            # noted paths keep their first stat (setdefault): what is new is at the end
            "seen": dict(islice(log.seen.items(), seen, None)) if log is not None else {},
            "lookups": dict(islice(log.lookups.items(), lookups, None)) if log is not None else {},
            "unsteady": log.unsteady if log is not None else False,
            "locks": [
                (p, where[id(i)], n) for p, i, n in (log.lock_lines[locks:] if log else []) if id(i) in where
            ],
        }

    def absorb(payload: dict, results: list[CheckpointInfo]) -> None:
        cache.shared().absorb(payload["cache"])
        state.errors.extend(payload["errors"])
        if state.log is not None:
            readlog.merge(state.log, payload["seen"], payload["lookups"], payload["unsteady"])
            state.log.lock_lines += [(p, results[n], line) for p, n, line in payload["locks"]]

    yield from forked.streamed(items, processes, begin=begin, export=export, absorb=absorb)


def scan(root: str | os.PathLike) -> list[CheckpointInfo]:
    return list(iter_checkpoints(root))


def _list(state: _Scan, path: str) -> _Listing | None:
    listing = _Listing(path, state.rel(path))
    noting = readlog.noting()
    try:
        with os.scandir(path) as it:
            for entry in it:
                if noting and entry.is_symlink():  # what it is can change with no change to this folder
                    readlog.note(entry.path, _stat_or_none(entry))  # a dangling one too: it may appear
                try:
                    if entry.is_dir():  # follows symlinks; filtered in _enter
                        listing.dirs[entry.name] = entry
                    elif entry.is_file():
                        listing.files[entry.name] = entry
                except OSError:
                    continue
    except OSError as e:
        if noting:
            readlog.note_failure(path, e)
        state.errors.append(f"{listing.rel}: cannot list ({e.strerror or e})")
        return None
    if noting:
        readlog.listed(path)
    return listing


def _stat_or_none(entry: os.DirEntry) -> os.stat_result | None:
    try:
        return entry.stat()  # kept by the entry: the walk's own stat of it costs nothing more
    except OSError:
        return None


def _enter(state: _Scan, entry: os.DirEntry) -> os.stat_result | None:
    """stat of a subfolder we may enter, or None (skip list, symlink out of root, already seen)."""
    if entry.name in SKIP_DIRS:
        return None
    try:
        # A linked folder is never entered. One that points outside the root is not ours to show (and
        # delete refuses paths through it). One that points inside is reached by its real path anyway,
        # and entering it through the link first would report every checkpoint under the link's name:
        # `best`/`promoted` marks and delete protection are keyed by the real path.
        if entry.is_symlink():  # (noted by _list: a reader may open files through it)
            return None
        st = entry.stat()
    except OSError:
        return None
    key = (st.st_dev, st.st_ino)
    if key in state.seen:
        return None
    state.seen.add(key)
    if readlog.noting():
        readlog.note(entry.path, st)
    return st


def _skip_own_cache(state: _Scan) -> None:
    """Our cache folder is never walked (``ls ~`` reaches ~/.cache/ckpt-tui): nothing in it is a checkpoint,
    and the scan's own cache writes would change folders its snapshot checks, every time."""
    directory = cache.shared().directory
    st = cache.stat_of(os.path.dirname(directory)) if directory is not None else None
    if st is not None:
        state.seen.add((st.st_dev, st.st_ino))


def _visit(
    state: _Scan, path: str, run: RunContext | None, mtime: float, depth: int = 0
) -> Iterator[FolderRead | FileRead]:
    if state.cancelled():
        return
    if depth > MAX_WALK_DEPTH:  # generators nest per level: a 990-level tree would exhaust the stack
        state.errors.append(f"{state.rel(path)}: nested deeper than {MAX_WALK_DEPTH} levels, not walked")
        return
    listing = _list(state, path)
    if listing is None:
        return
    if RUN_FILE in listing.files:
        run = _enter_run(state, listing)
    _decide_hf_best(state, listing)
    name = os.path.basename(path)
    kind, leftover = _folder_kind(name, listing)
    if kind is not None:
        if depth == 0 and readlog.noting():  # the root is a checkpoint: its trainer_state may name a sibling
            readlog.note(os.path.dirname(path), cache.stat_of(os.path.dirname(path)))
        yield from _checkpoint_folder(state, listing, kind, run, mtime, leftover=leftover)
        return
    loose = sorted(f for f in listing.files if sniff.loose_candidate(f))
    mindspore = FolderReports(path, loose)
    lightning = integrity.LightningBest(path, loose)
    for fname in loose:
        yield from _loose_file(state, listing.files[fname].path, fname, run, mindspore, lightning)
    for dname in sorted(listing.dirs):
        st = _enter(state, listing.dirs[dname])
        if st is not None:
            yield from _visit(state, listing.dirs[dname].path, run, st.st_mtime, depth + 1)
            if state.cancelled():
                return


def _enter_run(state: _Scan, listing: _Listing) -> RunContext:
    return state.marks.enter_run(listing.path, listing.rel, listing.files, listing.dirs)


def _decide_hf_best(state: _Scan, listing: _Listing) -> None:
    state.marks.decide_best(listing.path, listing.files, listing.dirs)


def _folder_kind(name: str, listing: _Listing) -> tuple[Kind | None, bool]:
    files, dirs = set(listing.files), set(listing.dirs)
    target = commit.target_name_of_temp(name)
    if target is not None:  # .<name>.tmp / .<name>.old left by an interrupted commit
        kind = classify_folder(target, files, dirs) or classify_by_name(target)
        return kind, kind is not None
    return classify_folder(name, files, dirs), False


# --- one checkpoint folder ------------------------------------------------------------------------------


@dataclass(repr=False, eq=False)  # private: never printed nor compared, two methods fewer to compile
class _Tree:
    """Everything under one checkpoint folder: files (posix rel path -> size) and nested checkpoints."""

    files: dict[str, int] = field(default_factory=dict)
    allocated: dict[str, int | None] = field(default_factory=dict)  # rel path -> bytes on disk
    stats: dict[str, tuple[int, int, int, int, int]] = field(default_factory=dict)  # abs path -> walk_key
    nested: list[tuple[_Listing, Kind]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _collect(state: _Scan, listing: _Listing, tree: _Tree, prefix: str, parent_kind: Kind) -> None:
    if prefix.count("/") >= MAX_WALK_DEPTH:
        tree.problems.append(f"{prefix}: nested deeper than {MAX_WALK_DEPTH} levels, not walked")
        return
    for fname, entry in listing.files.items():
        try:
            st = entry.stat()
            tree.stats[entry.path] = cache.walk_key(st)
            tree.files[prefix + fname] = st.st_size
            tree.allocated[prefix + fname] = allocated_bytes(st)
        except OSError:
            st = None
            tree.problems.append(f"{prefix}{fname}: cannot stat (broken link?)")
        if readlog.noting():
            readlog.note(entry.path, st)
    for dname, entry in sorted(listing.dirs.items()):
        if _enter(state, entry) is None:
            continue
        sub = _list(state, entry.path)
        if sub is None:
            tree.problems.append(f"{prefix}{dname}/: cannot list, size is a lower bound")
            continue
        kind = classify_folder(dname, set(sub.files), set(sub.dirs))
        if kind in NESTED_KINDS and not (kind == "deepspeed" and parent_kind == "accelerate-state"):
            tree.nested.append((sub, kind))
        _decide_hf_best(state, sub)
        _collect(state, sub, tree, f"{prefix}{dname}/", parent_kind)


def _checkpoint_folder(
    state: _Scan, listing: _Listing, kind: Kind, run: RunContext | None, mtime: float, *, leftover: bool
) -> Iterator[FolderRead]:
    """The walk's part (files, nested checkpoints, context) now; the reading, deferred."""
    tree = _Tree()
    _collect(state, listing, tree, "", kind)
    info = _base_info(state, listing, kind, run, mtime, tree.files)
    info.allocated_bytes = _sum_known(tree.allocated.values())
    nested = []
    for sub, sub_kind in tree.nested:
        prefix = sub.rel[len(listing.rel) + 1 :] + "/" if listing.rel != "." else sub.rel + "/"
        sub_files = {k[len(prefix) :]: v for k, v in tree.files.items() if k.startswith(prefix)}
        sub_info = _base_info(state, sub, sub_kind, run, None, sub_files)
        sub_info.allocated_bytes = _sum_known(v for k, v in tree.allocated.items() if k.startswith(prefix))
        nested.append((sub.path, sub_kind, sub_info, sub_files))
    yield FolderRead(
        state, listing.path, kind, run, info, tree.files, tree.stats, tree.problems, nested, leftover
    )


def _sum_known(values) -> int | None:
    """The total of per-file allocations; None when any is unknown (no total is better than a low one)."""
    total = 0
    for v in values:
        if v is None:
            return None
        total += v
    return total


def _base_info(
    state: _Scan,
    listing: _Listing,
    kind: Kind,
    run: RunContext | None,
    mtime: float | None,
    files: dict[str, int],
) -> CheckpointInfo:
    name = os.path.basename(listing.path)
    info = CheckpointInfo(path=listing.rel, kind=kind, size_bytes=sum(files.values()), mtime=mtime)
    info.fold = fold_from_path(listing.rel)
    info.step = step_from_name(commit.target_name_of_temp(name) or name)
    if run is not None:
        info.run = run.rel
    elif kind == "hf-checkpoint":
        parent = os.path.dirname(listing.rel) if listing.rel != "." else ".."
        info.run = parent or "."
    info.promoted = state.marks.is_promoted(listing.path)  # best is judged by the reader (FolderRead)
    return info


# --- loose files ----------------------------------------------------------------------------------------


def _loose_file(
    state: _Scan,
    path: str,
    name: str,
    run: RunContext | None,
    mindspore: FolderReports | None = None,
    lightning: integrity.LightningBest | None = None,
) -> Iterator[FolderRead | FileRead]:
    """One loose file; ``mindspore``: the MindSpore files of its folder, read together when first needed;
    ``lightning``: which .ckpt of its folder Lightning's ModelCheckpoint calls best."""
    if readlog.noting():  # also when it turns out to be no checkpoint: rewritten, it may become one
        readlog.note(path, cache.stat_of(path))
    if not name.endswith(sniff.LISTED_BY_NAME) and not looks_like_pickle(path):
        return  # a .bin of raw bytes, or a file of another name that is not a pickle
    try:
        st = os.stat(path)
    except OSError as e:
        state.errors.append(f"{state.rel(path)}: {e.strerror or e}")
        return
    rel = state.rel(path) if path != state.root else name
    kind: Kind = "safetensors-file" if name.endswith(".safetensors") else "torch-pickle"
    info = CheckpointInfo(path=rel, kind=kind, size_bytes=st.st_size, mtime=st.st_mtime)
    info.allocated_bytes = allocated_bytes(st)
    info.run = run.rel if run is not None else None
    info.fold = fold_from_path(rel)
    stem = name.rsplit(".", 1)[0]
    if kind == "torch-pickle":
        if m := LIGHTNING_NAME_STEP.search(stem):
            info.step = int(m.group(1))
        if m := LIGHTNING_NAME_EPOCH.search(stem):
            info.epoch = float(m.group(1))
        if info.step is None and (m := EPOCH_STEP_NAME.search(stem)):
            info.epoch, info.epoch_step = float(m.group(1)), int(m.group(2))  # the step within the epoch
    info.promoted = state.marks.is_promoted(path)
    yield FileRead(info, path, name, mindspore, lightning)


# --- one path (inspect) ---------------------------------------------------------------------------------


def describe(root: str | os.PathLike, path: str | os.PathLike) -> CheckpointInfo | None:
    """The ``CheckpointInfo`` the scan of ``root`` would give ``path``, without walking the whole root.

    Only the context it needs is read: the nearest run folder above ``path``, the parent folder (which
    sibling checkpoint-N is best) and, for a nested adapter or tag folder, the checkpoint holding it.
    None when ``path`` is missing or not a checkpoint.
    """
    root, path = os.path.abspath(os.fspath(root)), os.path.abspath(os.fspath(path))
    state = _Scan(root, os.path.realpath(root), lambda: False, [])
    ancestors = _ancestors_within(root, path)
    run = None
    for folder in ancestors:  # nearest first
        if os.path.isfile(os.path.join(folder, RUN_FILE)):
            listing = _list(state, folder)
            run = _enter_run(state, listing) if listing is not None else None
            break
    name = os.path.basename(path)
    if os.path.isfile(path):
        if not sniff.loose_candidate(name):
            return None
        folder = os.path.dirname(path)
        try:  # a MindSpore file is judged beside its siblings
            siblings = sorted(n for n in os.listdir(folder) if n.endswith(MINDSPORE_SUFFIX))
        except OSError:
            siblings = [name]
        found = _loose_file(
            state, path, name, run, FolderReports(folder, siblings), integrity.LightningBest(folder, siblings)
        )
        return next(_resolved(found, threads=1), None)
    if not os.path.isdir(path):
        return None
    nested = _describe_nested(state, path, ancestors[:3], run)
    if nested is not None:
        return nested
    parent = _list(state, os.path.dirname(path))
    if parent is not None:
        _decide_hf_best(state, parent)
    listing = _list(state, path)
    if listing is None:
        return None
    kind, leftover = _folder_kind(name, listing)
    if kind is None:
        return None
    st = os.stat(path)
    state.seen.add((st.st_dev, st.st_ino))
    found = _checkpoint_folder(state, listing, kind, run, st.st_mtime, leftover=leftover)
    return next(_resolved(found, threads=1), None)


def _describe_nested(
    state: _Scan, path: str, holders: list[str], run: RunContext | None
) -> CheckpointInfo | None:
    """``path`` as the scan reports it when it sits inside a checkpoint folder (adapter/, global_stepN)."""
    for holder in holders:
        listing = _list(state, holder)
        if listing is None:
            return None
        kind, leftover = _folder_kind(os.path.basename(holder), listing)
        if kind is None:
            continue
        _decide_hf_best(state, listing)  # as the walk does: its checkpoint-N children's best, by its states
        st = os.stat(holder)
        state.seen.add((st.st_dev, st.st_ino))
        want = state.rel(path)
        found = _checkpoint_folder(state, listing, kind, run, st.st_mtime, leftover=leftover)
        for info in _resolved(found, threads=1):
            if info.path == want:
                return info
        return None
    return None


def _ancestors_within(root: str, path: str) -> list[str]:
    """Folders from ``path``'s parent up to ``root`` (nearest first); [] when ``path`` is outside it."""
    out = []
    current = os.path.dirname(path)
    if not (path == root or path.startswith(root.rstrip(os.sep) + os.sep)):
        return [current]
    while True:
        if len(current) < len(root):
            break
        out.append(current)
        if current == root:
            break
        current = os.path.dirname(current)
    return out
