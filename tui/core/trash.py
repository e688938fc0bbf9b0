"""The trash under ROOT (docs/FORMAT.md, "Trash"): deletes are renames, so they are instant and undoable.

``<ROOT>/.ckpt-trash/<id>/entry.json`` says where ``<id>/item`` came from. A rename never copies, so a
path on another filesystem than ROOT is refused rather than silently copied across disks.

Two kinds of entry:
- a whole item (a checkpoint folder or a file): ``item`` is the moved thing itself;
- a bundle of files taken out of one folder (slim): ``entry.json`` lists them under ``"files"`` (paths
  relative to ``original_path``) and ``item/`` mirrors them at those relative paths.

Entries written by one action share a ``"batch"`` id, so that undo restores the whole action.

Only ``tui.core.actions`` calls the moving / removing methods; the app and the CLI go through it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tui.core.commit import utc_now
from tui.core.files import is_within, json_object, load_json_object
from tui.core.names import MANIFEST_NAME, TRASH_DIR, TRASH_ENTRY_FILE, TRASH_ITEM


class TrashError(Exception):
    """An operation the trash refuses; the message is one line for the user."""


@dataclass
class TrashEntry:
    id: str
    original_path: str  # posix, relative to ROOT
    deleted_at: str  # ISO 8601 UTC
    size_bytes: int
    batch: str | None = None
    action: str | None = None
    files: list[str] | None = None  # bundle entries only: paths relative to original_path
    origin: str | None = None  # what asked for it: "app" or "cli" (None: an entry written before this)
    problems: list[str] = field(default_factory=list)  # entry.json unreadable, item missing...

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if self.files is None:
            del out["files"]
        return out

    @property
    def what(self) -> str:
        """The entry in words: the path, or how many files were slimmed out of it."""
        where = self.original_path or "?"
        return f"{len(self.files)} files slimmed from {where}" if self.files is not None else where


def tree_size(path: Path) -> int:
    """Bytes under ``path`` without following symlinks (a link counts as its own small size)."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def remove_tree(path: Path) -> None:
    """Delete a file, a link (never its target) or a folder, including read-only ones."""

    def make_writable_and_retry(func, p, _exc):
        os.chmod(os.path.dirname(p), stat.S_IRWXU)
        if os.path.isdir(p) and not os.path.islink(p):
            os.chmod(p, stat.S_IRWXU)
        func(p)

    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=make_writable_and_retry)
        else:
            shutil.rmtree(path, onerror=make_writable_and_retry)


class Trash:
    def __init__(self, root: Path | str):
        self.root = Path(os.path.realpath(root))
        self.folder = self.root / TRASH_DIR

    # --- writing -------------------------------------------------------------------------------------

    def _rel(self, path: Path) -> str:
        """``path`` (absolute or relative to ROOT) as posix relative to ROOT; TrashError if it escapes."""
        path = Path(path)
        full = path if path.is_absolute() else self.root / path
        # The parent is resolved (a symlinked folder must not smuggle the rename outside ROOT), the last
        # component is not: moving a symlink moves the link itself.
        parent = Path(os.path.realpath(full.parent))
        full = parent / full.name
        if full.name in ("", ".", "..") or not is_within(parent, self.root) or full == self.root:
            raise TrashError(f"{path}: not inside {self.root}")
        if is_within(full, self.folder):
            raise TrashError(f"{path}: already in the trash")
        return full.relative_to(self.root).as_posix()

    def _check_same_device(self, full: Path, shown: str) -> None:
        self.folder.mkdir(exist_ok=True)
        if os.lstat(full).st_dev != os.stat(self.folder).st_dev:
            raise TrashError(
                f"{shown}: on a different filesystem than {self.folder}; refusing to copy across disks"
            )

    def _new_entry_folder(self) -> tuple[str, Path]:
        """A fresh ``<UTC timestamp>-<n>`` folder; mkdir is the lock, so concurrent deleters never collide."""
        self.folder.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for n in range(1, 100_000):
            entry_id = f"{stamp}-{n:05d}"  # zero-padded so that ids sort as strings
            folder = self.folder / entry_id
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            return entry_id, folder
        raise TrashError(f"{self.folder}: too many entries created within one second")

    def _write_entry(self, folder: Path, entry: TrashEntry) -> None:
        tmp = folder / f".{TRASH_ENTRY_FILE}.tmp"
        tmp.write_text(json.dumps(entry.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, folder / TRASH_ENTRY_FILE)

    def move(
        self,
        path: Path | str,
        *,
        batch: str | None = None,
        action: str | None = None,
        origin: str | None = None,
    ) -> TrashEntry:
        """Rename ``path`` into the trash. entry.json is written first, so a crash never loses the origin."""
        rel = self._rel(Path(path))
        full = self.root / rel
        if not os.path.lexists(full):
            raise TrashError(f"{rel}: does not exist")
        self._check_same_device(full, rel)
        entry_id, folder = self._new_entry_folder()
        entry = TrashEntry(entry_id, rel, utc_now(), tree_size(full), batch or entry_id, action, origin=origin)
        self._write_entry(folder, entry)
        try:
            os.rename(full, folder / TRASH_ITEM)
        except OSError as e:
            remove_tree(folder)
            raise TrashError(f"{rel}: cannot move to the trash ({e.strerror})") from None
        return entry

    def move_files(
        self,
        folder_path: Path | str,
        files: list[str],
        *,
        batch: str | None = None,
        action: str | None = None,
        origin: str | None = None,
    ) -> TrashEntry:
        """Move some files out of one folder into a single bundle entry (slim)."""
        rel = self._rel(Path(folder_path))
        base = self.root / rel
        for f in files:
            p = Path(f)
            if p.is_absolute() or ".." in p.parts or not os.path.lexists(base / p):
                raise TrashError(f"{rel}/{f}: does not exist inside {rel}")
            self._check_same_device(base / p, f"{rel}/{f}")
        entry_id, folder = self._new_entry_folder()
        size = sum(tree_size(base / f) for f in files)
        entry = TrashEntry(entry_id, rel, utc_now(), size, batch or entry_id, action, sorted(files), origin)
        self._write_entry(folder, entry)
        moved: list[str] = []
        try:
            for f in entry.files or []:
                dest = folder / TRASH_ITEM / f
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.rename(base / f, dest)
                moved.append(f)
        except OSError as e:
            for f in moved:  # put back what already moved: a half-done slim is worse than none
                os.rename(folder / TRASH_ITEM / f, base / f)
            remove_tree(folder)
            raise TrashError(f"{rel}: cannot move files to the trash ({e.strerror})") from None
        return entry

    # --- reading -------------------------------------------------------------------------------------

    def _load(self, folder: Path) -> TrashEntry:
        data, problems = load_json_object(folder / TRASH_ENTRY_FILE)
        try:
            if data is None:
                raise ValueError(problems[0].partition(": ")[2] if problems else "missing")
            entry = TrashEntry(
                id=folder.name,
                original_path=str(data["original_path"]),
                deleted_at=str(data.get("deleted_at", "")),
                size_bytes=int(data.get("size_bytes") or 0),
                batch=data.get("batch") or folder.name,
                action=data.get("action"),
                files=[str(f) for f in data["files"]] if isinstance(data.get("files"), list) else None,
                origin=data["origin"] if isinstance(data.get("origin"), str) else None,
            )
        except (ValueError, KeyError, TypeError, OverflowError) as e:
            entry = TrashEntry(folder.name, "", "", tree_size(folder))
            entry.problems.append(f"{TRASH_DIR}/{folder.name}/{TRASH_ENTRY_FILE}: unreadable ({e})")
            return entry
        if not os.path.lexists(folder / TRASH_ITEM):
            entry.problems.append(f"{TRASH_DIR}/{folder.name}: no '{TRASH_ITEM}' (nothing to restore)")
        return entry

    def list(self) -> list[TrashEntry]:
        """Entries oldest first (ids sort by time)."""
        if not self.folder.is_dir():
            return []
        folders = [p for p in self.folder.iterdir() if p.is_dir() and not p.is_symlink()]
        return [self._load(p) for p in sorted(folders, key=lambda p: p.name)]

    def get(self, entry_id: str) -> TrashEntry:
        folder = self._entry_folder(entry_id)
        return self._load(folder)

    def _entry_folder(self, entry_id: str) -> Path:
        if not entry_id or "/" in entry_id or entry_id in (".", "..") or os.sep in entry_id:
            raise TrashError(f"{entry_id!r}: not a trash id")
        folder = self.folder / entry_id
        if not folder.is_dir() or folder.is_symlink():
            raise TrashError(f"{entry_id}: no such trash entry in {self.folder}")
        return folder

    # --- restoring / emptying ------------------------------------------------------------------------

    def restore(self, entry_id: str) -> TrashEntry:
        """Rename the item back; refuse when its original place is occupied again."""
        folder = self._entry_folder(entry_id)
        entry = self._load(folder)
        if entry.problems:
            raise TrashError(entry.problems[0])
        rel = self._rel(Path(entry.original_path))  # entry.json is data: never trust it to stay in ROOT
        target = self.root / rel
        if entry.files is None:
            if os.path.lexists(target):
                raise TrashError(f"{rel}: exists again; move it away first, then restore {entry_id}")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(folder / TRASH_ITEM, target)
        else:
            self._restore_files(folder, entry, target, rel)
        remove_tree(folder)
        return entry

    def _restore_files(self, folder: Path, entry: TrashEntry, target: Path, rel: str) -> None:
        files = entry.files or []
        for f in files:
            p = Path(f)
            if p.is_absolute() or ".." in p.parts:
                raise TrashError(f"{entry.id}: unsafe file name {f!r} in {TRASH_ENTRY_FILE}")
            # Slim rewrites the manifest without the dropped files; its own rewrite may be replaced.
            if os.path.lexists(target / p) and not (f == MANIFEST_NAME and _is_slimmed_manifest(target / p)):
                raise TrashError(f"{rel}/{f}: exists again; move it away first, then restore {entry.id}")
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            dest = target / f
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(folder / TRASH_ITEM / f, dest)

    def remove(self, entry_id: str) -> int:
        """Delete one entry for good; returns the bytes it held."""
        folder = self._entry_folder(entry_id)
        size = tree_size(folder)
        remove_tree(folder)
        return size

    def empty(self) -> int:
        """Delete every entry for good; returns the bytes freed."""
        return sum(self.remove(e.id) for e in self.list())


def _is_slimmed_manifest(path: Path) -> bool:
    return "slimmed" in (json_object(path) or {})

