"""Which paths may be deleted or slimmed, and why not: every rule returns a reason a person can read.

Rules (docs/FORMAT.md):
- never outside ROOT (symlinks resolved: a symlinked folder on the way, or the path itself being a link
  that points outside), never ROOT itself, never the trash folder;
- never the best or promoted checkpoint of a run (``CheckpointInfo.best`` / ``.promoted``, and any
  ``kind: "promoted"`` manifest's export and ``source``), nor a folder that contains one or lies in one;
- never a checkpoint a pointer names: DeepSpeed's ``latest``, Lightning's ``last.ckpt`` (the file itself and
  its symlink target), ``best_model_checkpoint`` of any ``trainer_state.json`` under the run. A delete that
  removes the ``latest`` / ``last.ckpt`` pointer together with its target leaves nothing dangling and is
  allowed (deleting a whole DeepSpeed output folder);
- never a folder being written: a live ``.lock`` in it, under it or in an ancestor (the run folder), a
  commit-protocol temp folder (``.<name>.tmp`` / ``.old``) that changed recently, or any file modified in
  the last ``QUIET_SECONDS``. The clock and the pid check are injectable for tests.

Slim keeps the weights, so for slim the best / promoted / best_model_checkpoint rules do not apply; the
others do (slimming the ``latest`` target would break resume).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tui.core.commit import is_temp_name
from tui.core.files import FULL_WALK_DEPTH, is_within, json_object, read_small_text, walk
from tui.core.model import CheckpointInfo
from tui.core.names import (
    CHECKPOINT_N,
    DEEPSPEED_LATEST,
    LIGHTNING_LAST,
    LOCK_FILE,
    MANIFEST_NAME,
    PROMOTED_DIR,
    PROMOTED_KIND,
    RUN_FILE,
    TRAINER_STATE,
    TRASH_DIR,
)
from tui.core.process import pid_alive, read_lock
from tui.core.summaries import resolve_best_checkpoint

QUIET_SECONDS = 60.0  # a file touched more recently than this means someone is writing
TEMP_STALE_SECONDS = 600.0  # a commit temp folder untouched this long is a dead writer's leftover
_POINTER_WALK_DEPTH = 6
_MAX_POINTER_FILE = 64 << 20


@dataclass(frozen=True)
class Pointer:
    """Something on disk that names a checkpoint: the file holding the name, and the checkpoint."""

    kind: Literal["latest", "last.ckpt", "best_model_checkpoint", "promoted-export", "promoted-source"]
    holder: Path
    target: Path


def _overlap(a: Path, b: Path) -> bool:
    return is_within(a, b) or is_within(b, a)


class Safety:
    """Refusal rules for one ROOT and one set of scanned infos. Pointer walks are cached per instance, so
    build a fresh one for each plan and each execution (things change in between)."""

    def __init__(
        self,
        root: Path | str,
        infos: Iterable[CheckpointInfo] = (),
        *,
        clock: Callable[[], float] = time.time,
        is_pid_alive: Callable[[int], bool] = pid_alive,
        hostname: str | None = None,
    ):
        self.root = Path(os.path.realpath(root))
        self.trash = self.root / TRASH_DIR
        self.infos = list(infos)
        self.clock = clock
        self.is_pid_alive = is_pid_alive
        self.hostname = hostname or socket.gethostname()
        self._pointer_cache: dict[Path, list[Pointer]] = {}  # scope folder -> pointers under it
        self._ancestor_cache: dict[Path, list[Pointer]] = {}  # folder -> pointers in its own files
        self._real_cache: dict[str, Path] = {}  # info.path -> real location

    # --- paths ---------------------------------------------------------------------------------------

    def rel(self, path: Path) -> str:
        """posix relative to ROOT; absolute for the few things read above ROOT (a run's lock)."""
        if not is_within(path, self.root):
            return str(path)
        return path.relative_to(self.root).as_posix() or "."

    def locate(self, path: Path | str) -> tuple[Path | None, str | None]:
        """(absolute path inside ROOT with real parents, None) or (None, reason). Relative paths are
        relative to ROOT. The last component is kept as is: deleting a link moves the link."""
        given = Path(path)
        full = given if given.is_absolute() else self.root / given
        if not os.path.lexists(full):
            return None, "does not exist"
        lexical = Path(os.path.normpath(full))
        if not is_within(lexical, self.root):
            return None, f"is outside ROOT ({self.root})"
        if lexical == self.root:
            return None, "is ROOT itself"
        real_parent = Path(os.path.realpath(lexical.parent))
        if not is_within(real_parent, self.root):
            return None, f"is outside ROOT ({self.root}) once symlinks are resolved"
        located = real_parent / lexical.name
        if located.is_symlink():
            target = Path(os.path.realpath(located))
            if not is_within(target, self.root):
                return None, f"is a symlink pointing outside ROOT (to {target})"
        if is_within(located, self.trash):
            return None, "is the trash folder (use `trash empty` / `trash restore`)"
        if located == self.root:
            return None, "is ROOT itself"
        return located, None

    def _real(self, rel: str) -> Path:
        """ROOT/rel with its parents resolved, as ``locate`` resolves what is deleted: an info listed
        through a symlinked folder must protect the folder it really is (cached: one per info)."""
        if rel not in self._real_cache:
            full = self.root / rel
            self._real_cache[rel] = Path(os.path.realpath(full.parent)) / full.name
        return self._real_cache[rel]

    # --- rules ---------------------------------------------------------------------------------------

    def reasons(self, path: Path | str, *, action: str = "delete") -> list[str]:
        """Every reason ``path`` must not be deleted (``action="delete"``) or slimmed; [] when it may."""
        located, reason = self.locate(path)
        if located is None:
            return [reason or "refused"]
        out: list[str] = []
        if action == "delete":
            out += self._protected_infos(located)
            if located.name == LIGHTNING_LAST:
                out.append("is Lightning's last.ckpt (the resume point)")
        out += self._pointer_reasons(located, action)
        out += self.being_written(located)
        return list(dict.fromkeys(out))  # same reason from two rules: say it once

    def refusal(self, path: Path | str, *, action: str = "delete") -> str | None:
        found = self.reasons(path, action=action)
        return "; ".join(found) if found else None

    def _protected_infos(self, located: Path) -> list[str]:
        out = []
        for info in self.infos:
            if not (info.best or info.promoted):
                continue
            protected = self._real(info.path)
            if not _overlap(located, protected):
                continue
            what = "best" if info.best else "promoted"
            whose = f" of run {info.run}" if info.run else ""
            if located == protected:
                out.append(f"is the {what} checkpoint{whose}")
            elif is_within(protected, located):
                out.append(f"contains the {what} checkpoint{whose} ({info.path})")
            else:
                out.append(f"is inside the {what} checkpoint{whose} ({info.path})")
        return out

    def _pointer_reasons(self, located: Path, action: str) -> list[str]:
        out = []
        for p in self.pointers_for(located):
            if not _overlap(located, p.target):
                continue
            holder = self.rel(p.holder)
            if p.kind in ("latest", "last.ckpt"):
                if is_within(p.holder, located):  # pointer and target go together: nothing dangles
                    continue
                what = "DeepSpeed's `latest`" if p.kind == "latest" else "Lightning's last.ckpt"
                out.append(f"is the checkpoint {what} names ({holder})")
            elif action == "delete" and p.kind == "best_model_checkpoint":
                if is_within(p.holder, located) and self._superseded(p.holder.parent):
                    continue  # its own stale "best so far", overruled by a later checkpoint's state
                out.append(f"is best_model_checkpoint in {holder}")
            elif action == "delete" and p.kind == "promoted-export":
                out.append(f"is a promoted export ({holder})")
            elif action == "delete" and p.kind == "promoted-source":
                out.append(f"was promoted (source of {holder})")
        return out

    def _superseded(self, folder: Path) -> bool:
        """``folder`` is an HF ``checkpoint-N`` with a later ``checkpoint-M`` beside it. Each checkpoint's
        trainer_state names the best *so far*, so the first one always names itself; only later states
        (checked as pointers of their own) speak for the run, as in the scanner's ``best``."""
        m = CHECKPOINT_N.match(folder.name)
        if m is None:
            return False
        try:
            siblings = os.listdir(folder.parent)
        except OSError:
            return False
        return any(
            (n := CHECKPOINT_N.match(name))
            and int(n.group(1)) > int(m.group(1))
            and (folder.parent / name).is_dir()
            for name in siblings
        )

    # --- being written -------------------------------------------------------------------------------

    def being_written(self, located: Path, *, committed: bool = False) -> list[str]:
        """Why ``located`` may be being written now. ``committed``: the caller verified its committed
        manifest (written last, listing every file's size), so a recent change is that commit, not a
        writer: the quiet-minute rule is skipped; locks and commit temp folders still count."""
        out = []
        now = self.clock()
        chain = [located, *[a for a in located.parents if is_within(a, self.root)]]
        # Above ROOT only a trainer run's lock counts (a ROOT chosen inside a run must still see it);
        # other tools leave `.lock` files around too. Reading is not touching.
        lock_files = [
            a / LOCK_FILE
            for a in [located, *located.parents]
            if os.path.isfile(a / LOCK_FILE) and (is_within(a, self.root) or (a / RUN_FILE).is_file())
        ]
        newest = 0.0
        for dirpath, dirnames, filenames, mtime in _walk_mtimes(located):
            newest = max(newest, mtime)
            if LOCK_FILE in filenames:
                lock_files.append(Path(dirpath) / LOCK_FILE)
            dirnames[:] = [d for d in dirnames if d != TRASH_DIR]
        for lock in dict.fromkeys(lock_files):
            held = self._lock_holder(lock)
            if held:
                out.append(f"is being written: {self.rel(lock)} {held}")
        for folder in chain:
            if is_within(folder, self.root) and is_temp_name(folder.name):
                age = now - _newest_mtime(folder)
                if age < TEMP_STALE_SECONDS:
                    out.append(
                        f"is inside a commit temp folder ({self.rel(folder)}) written {max(age, 0):.0f} s ago: "
                        "a save may be in progress"
                    )
        if now - newest < QUIET_SECONDS and not committed:
            out.append(
                f"was modified {max(now - newest, 0):.0f} s ago (being written?); try again in a minute"
            )
        return out

    def _lock_holder(self, lock: Path) -> str | None:
        """Why the lock is held ("held by pid 12 (alive)"), or None for a stale lock. On another host only
        the heartbeat can tell; a trainer's lock is refreshed while it runs."""
        holder = read_lock(lock, now=self.clock(), hostname=self.hostname, is_alive=self.is_pid_alive)
        return f"is {holder.why}" if holder is not None and holder.live else None

    # --- pointers ------------------------------------------------------------------------------------

    def scope_of(self, located: Path) -> Path:
        """Where pointers naming ``located`` may live: its run folder (run.json, or the scanned run),
        else the folder it sits in (an HF / DeepSpeed output_dir)."""
        for folder in [located, *located.parents]:
            if not is_within(folder, self.root):
                break
            if (folder / RUN_FILE).is_file():
                return folder
        rel = self.rel(located)
        for info in self.infos:
            if info.run and (rel == info.path or rel.startswith(info.path.rstrip("/") + "/")):
                run = self.root / info.run
                if is_within(located, run):
                    return run
        return located.parent

    def pointers_for(self, located: Path) -> list[Pointer]:
        """Pointers anywhere in the scope (sibling checkpoints' trainer_state.json...), plus those held
        directly by any ancestor up to ROOT (an output_dir's ``latest`` above a shard file)."""
        found: list[Pointer] = []
        scope = self.scope_of(located)
        if scope not in self._pointer_cache:
            self._pointer_cache[scope] = list(self._find_pointers(scope))
        found += self._pointer_cache[scope]
        for folder in located.parents:
            if not is_within(folder, self.root):
                break
            if is_within(folder, scope):
                continue  # already walked
            if folder not in self._ancestor_cache:
                self._ancestor_cache[folder] = list(self._find_pointers(folder, depth=0))
            found += self._ancestor_cache[folder]
        return found

    def _find_pointers(self, scope: Path, depth: int = _POINTER_WALK_DEPTH):
        base_depth = len(scope.parts)
        for dirpath, dirnames, filenames in walk(scope, max_depth=FULL_WALK_DEPTH):
            here = Path(dirpath)
            dirnames[:] = (
                [d for d in dirnames if d != TRASH_DIR] if len(here.parts) - base_depth < depth else []
            )
            names = set(filenames)
            if DEEPSPEED_LATEST in names:
                target = read_small_text(here / DEEPSPEED_LATEST)
                if target and "/" not in target.strip() and target.strip() not in (".", ".."):
                    yield Pointer("latest", here / DEEPSPEED_LATEST, here / target.strip())
            last = here / LIGHTNING_LAST
            if LIGHTNING_LAST in names and last.is_symlink():
                yield Pointer("last.ckpt", last, Path(os.path.realpath(last)))
            if TRAINER_STATE in names:
                target = _best_model_checkpoint(here, self.root)
                if target is not None:
                    yield Pointer("best_model_checkpoint", here / TRAINER_STATE, target)
            if MANIFEST_NAME in names:
                source = _promoted_source(here / MANIFEST_NAME)
                if source is not None:
                    yield Pointer("promoted-export", here / MANIFEST_NAME, here)
                    # FORMAT.md says "relative"; the scanner accepts ROOT- or run-relative, so do we.
                    bases = [self.root] + ([here.parent.parent] if here.parent.name == PROMOTED_DIR else [])
                    for base in bases if source else []:
                        target = Path(os.path.normpath(base / source))
                        yield Pointer("promoted-source", here / MANIFEST_NAME, target)


def _walk_mtimes(top: Path):
    """os.walk plus the newest mtime of each folder's entries (lstat: links are not followed)."""
    if not top.is_dir() or top.is_symlink():
        yield str(top.parent), [], [], _lmtime(top)
        return
    for dirpath, dirnames, filenames in walk(top, max_depth=FULL_WALK_DEPTH):
        newest = _lmtime(Path(dirpath))
        for name in filenames + dirnames:
            newest = max(newest, _lmtime(Path(dirpath) / name))
        yield dirpath, dirnames, filenames, newest


def _newest_mtime(top: Path) -> float:
    return max((m for *_, m in _walk_mtimes(top)), default=0.0)


def _lmtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


def _best_model_checkpoint(folder: Path, root: Path) -> Path | None:
    """The folder ``trainer_state.json`` names as best, resolved as the scanner does (a copied run's stale
    absolute path means the copy's own checkpoint; a path outside ROOT never counts)."""
    state = json_object(folder / TRAINER_STATE, limit=_MAX_POINTER_FILE) or {}
    return resolve_best_checkpoint(folder, state.get("best_model_checkpoint"), root)


def _promoted_source(manifest: Path) -> str | None:
    """'' for a promoted manifest without a usable source, the source for one with, None otherwise."""
    data = json_object(manifest, limit=_MAX_POINTER_FILE)
    if data is None or data.get("kind") != PROMOTED_KIND:
        return None
    source = data.get("source")
    if not isinstance(source, str) or Path(source).is_absolute() or ".." in Path(source).parts:
        return ""
    return source
