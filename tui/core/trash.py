"""The trash under ROOT (docs/FORMAT.md, "Trash"): deletes are renames, so they are instant and undoable.

``<ROOT>/.ckpt-trash/<id>/entry.json`` says where ``<id>/item`` came from. A rename never copies, so a
path on another filesystem than ROOT is refused rather than silently copied across disks.

Two kinds of entry:
- a whole item (a checkpoint folder or a file): ``item`` is the moved thing itself;
- a bundle of files taken out of one folder (slim): ``entry.json`` lists them under ``"files"`` (paths
  relative to ``original_path``) and ``item/`` mirrors them at those relative paths.

Entries written by one action share a ``"batch"`` id, so that undo restores the whole action.

Only ``tui.core.actions`` calls the moving / removing methods; the app and the CLI go through it.

Others can write to ROOT too, so the trash trusts nothing it finds there (docs/SECURITY.md): a
``.ckpt-trash`` that is a symlink (or not a folder) is refused, only folders named like our ids whose
``entry.json`` is a regular file that validates are entries (anything else is listed with a problem and
never deleted), and a restore resolves every folder on its way and refuses one that leads out of ROOT.
An entry left empty by a delete killed half-way holds no data: it is hidden, and removed by ``empty``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tui.core.commit import utc_now
from tui.core.files import FULL_WALK_DEPTH, is_within, json_object, load_json_object, walk
from tui.core.names import MANIFEST_NAME, TRASH_DIR, TRASH_ENTRY_FILE, TRASH_ITEM

ENTRY_ID = re.compile(r"^\d{8}T\d{6}Z-\d{5}$")  # what _new_entry_folder names them
_DEBRIS_FILES = frozenset({TRASH_ENTRY_FILE, f".{TRASH_ENTRY_FILE}.tmp"})
DEBRIS_QUIET_SECONDS = 60.0  # an entry this old without an item is a killed delete's, not one in progress


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
    foreign: bool = False  # no valid entry.json of ours: listed, never restored nor deleted

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["foreign"]
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
    for dirpath, dirnames, filenames in walk(path, max_depth=FULL_WALK_DEPTH):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def remove_tree(path: Path) -> None:
    """Delete a file, a link (never its target) or a folder, including read-only ones."""
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        _remove_folder(os.fspath(path))


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)


def _remove_folder(top: str) -> None:
    """shutil.rmtree without recursion (Python 3.11's recurses: a 990-level tree raised RecursionError),
    and like its safe version never through a link: every folder is opened relative to its parent's
    descriptor with O_NOFOLLOW, so a folder swapped for a link meanwhile fails instead of being followed.
    Read-only folders are made writable first."""
    stack = [(os.open(top, _DIR_FLAGS), "")]  # (fd of a folder, its name in the folder below it)
    try:
        while stack:
            fd = stack[-1][0]
            sub = None
            with os.scandir(fd) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        sub = entry.name
                        break
                    _writable_retry(os.unlink, entry.name, fd)
            if sub is not None:
                try:
                    child = os.open(sub, _DIR_FLAGS, dir_fd=fd)
                except (
                    PermissionError
                ):  # a folder without r/x for us: ours to make readable, as rmtree's caller did
                    os.chmod(sub, stat.S_IRWXU, dir_fd=fd)
                    child = os.open(sub, _DIR_FLAGS, dir_fd=fd)
                stack.append((child, sub))
                continue
            os.close(fd)
            _, name = stack.pop()
            if stack:
                _writable_retry(os.rmdir, name, stack[-1][0])
    finally:
        for fd, _ in stack:
            os.close(fd)
    os.rmdir(top)


def _writable_retry(remove, name: str, folder_fd: int) -> None:
    """``remove(name)`` inside the folder ``folder_fd``; on PermissionError make that folder writable and
    try once more."""
    try:
        remove(name, dir_fd=folder_fd)
    except PermissionError:
        os.fchmod(folder_fd, stat.S_IRWXU)
        remove(name, dir_fd=folder_fd)


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

    def _check_folder(self, *, create: bool = False) -> bool:
        """Whether the trash folder exists (made when ``create``); TrashError when it is a symlink or not a
        folder: following it would move checkpoints out of ROOT or delete whatever it points at."""
        if create:
            try:
                os.mkdir(self.folder)
            except FileExistsError:
                pass
        try:
            st = os.lstat(self.folder)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(st.st_mode):
            raise TrashError(f"{self.folder}: is a symlink; refusing to use it as the trash (remove the link)")
        if not stat.S_ISDIR(st.st_mode):
            raise TrashError(f"{self.folder}: is not a folder; refusing to use it as the trash")
        return True

    @contextmanager
    def _at(self, parts: Sequence[str], *, create: bool = False) -> Iterator[int]:
        """A descriptor of the folder ROOT/parts reached one component at a time without following a link
        (O_NOFOLLOW; ``create``: missing folders are made), so a folder swapped for a symlink after the
        checks fails the rename instead of redirecting it. Every rename of user data goes through this."""
        fd = os.open(self.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            for part in parts:
                try:
                    sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, dir_fd=fd)
                    sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = sub
            yield fd
        finally:
            os.close(fd)

    def _check_same_device(self, full: Path, shown: str) -> None:
        self._check_folder(create=True)
        try:
            device = os.lstat(full).st_dev
        except FileNotFoundError:
            raise TrashError(f"{shown}: does not exist") from None
        if device != os.lstat(self.folder).st_dev:
            raise TrashError(
                f"{shown}: on a different filesystem than {self.folder}; refusing to copy across disks"
            )

    def _new_entry_folder(self) -> tuple[str, Path]:
        """A fresh ``<UTC timestamp>-<n>`` folder; mkdir is the lock, so concurrent deleters never collide."""
        self._check_folder(create=True)
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
        entry = TrashEntry(
            entry_id, rel, utc_now(), tree_size(full), batch or entry_id, action, origin=origin
        )
        self._write_entry(folder, entry)
        *parents, name = rel.split("/")
        try:
            with self._at(parents) as src, self._at([TRASH_DIR, entry_id]) as dest:
                os.rename(name, TRASH_ITEM, src_dir_fd=src, dst_dir_fd=dest)
        except OSError as e:
            remove_tree(folder)
            raise TrashError(f"{rel}: cannot move to the trash ({_why(e)})") from None
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
            real_parent = Path(os.path.realpath((base / p).parent))
            if not is_within(real_parent, self.root) or is_within(real_parent, self.folder):
                raise TrashError(f"{rel}/{f}: a folder on the way leads outside {self.root} (a symlink?)")
            self._check_same_device(base / p, f"{rel}/{f}")
        entry_id, folder = self._new_entry_folder()
        size = sum(tree_size(base / f) for f in files)
        entry = TrashEntry(entry_id, rel, utc_now(), size, batch or entry_id, action, sorted(files), origin)
        self._write_entry(folder, entry)
        moved: list[str] = []
        here, there = rel.split("/"), [TRASH_DIR, entry_id, TRASH_ITEM]
        try:
            for f in entry.files or []:
                self._rename_at(here, there, f, create=True)
                moved.append(f)
        except OSError as e:
            for f in moved:  # put back what already moved: a half-done slim is worse than none
                self._rename_at(there, here, f)
            remove_tree(folder)
            raise TrashError(f"{rel}: cannot move files to the trash ({_why(e)})") from None
        return entry

    def _rename_at(self, src: list[str], dest: list[str], f: str, *, create: bool = False) -> None:
        """Rename ROOT/src/f to ROOT/dest/f, every folder on both ways reached without following links."""
        *sub, name = f.split("/")
        with self._at(src + sub) as src_fd, self._at(dest + sub, create=create) as dest_fd:
            os.replace(name, name, src_dir_fd=src_fd, dst_dir_fd=dest_fd)

    # --- reading -------------------------------------------------------------------------------------

    def _load(self, folder: Path) -> TrashEntry:
        """The entry in ``folder``; ``problems`` says why it is not one we wrote (or cannot restore)."""
        try:
            data, problems = self._entry_data(folder)
            entry = TrashEntry(
                id=folder.name,
                original_path=_relative_path(data["original_path"], "original_path"),
                deleted_at=str(data.get("deleted_at", "")),
                size_bytes=_size(data.get("size_bytes")),
                batch=str(data.get("batch") or folder.name),
                action=data["action"] if isinstance(data.get("action"), str) else None,
                files=_file_list(data.get("files")),
                origin=data["origin"] if isinstance(data.get("origin"), str) else None,
            )
        except (ValueError, KeyError, TypeError) as e:
            entry = TrashEntry(folder.name, "", "", tree_size(folder), foreign=True)
            entry.problems.append(f"{TRASH_DIR}/{folder.name}/{TRASH_ENTRY_FILE}: {_first(e)}")
            return entry
        item = folder / TRASH_ITEM
        if not os.path.lexists(item):
            entry.problems.append(f"{TRASH_DIR}/{folder.name}: no '{TRASH_ITEM}' (nothing to restore)")
        elif entry.files is not None and (item.is_symlink() or not item.is_dir()):
            entry.problems.append(f"{TRASH_DIR}/{folder.name}: '{TRASH_ITEM}' of a bundle is not a folder")
        return entry

    def _entry_data(self, folder: Path) -> tuple[dict[str, Any], list[str]]:
        """entry.json of an entry folder we named; ValueError saying why it is not one of ours."""
        if not ENTRY_ID.match(folder.name):
            raise ValueError("not a trash entry written by ckpt-tui (unexpected folder name)")
        path = folder / TRASH_ENTRY_FILE
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise ValueError("unreadable (missing)") from None
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("unreadable (not a regular file)")
        data, problems = load_json_object(path)
        if data is None:
            raise ValueError(f"unreadable ({problems[0].partition(': ')[2] if problems else 'missing'})")
        if data.get("id", folder.name) != folder.name:
            raise ValueError(f"names another entry ({str(data.get('id'))[:40]!r})")
        return data, problems

    def _is_debris(self, folder: Path) -> bool:
        """An entry folder a killed delete left without an item: it holds at most its own entry.json."""
        if not ENTRY_ID.match(folder.name):
            return False
        try:
            names = set(os.listdir(folder))
        except OSError:
            return False
        if not names <= _DEBRIS_FILES:
            return False
        # Our entry.json is written whole (tmp + rename): one that does not validate is not ours.
        return TRASH_ENTRY_FILE not in names or not self._load(folder).foreign

    def _entry_folders(self) -> list[Path]:
        if not self._check_folder():
            return []
        folders = [p for p in self.folder.iterdir() if p.is_dir() and not p.is_symlink()]
        return sorted(folders, key=lambda p: p.name)

    def list(self) -> list[TrashEntry]:
        """Entries oldest first (ids sort by time); a killed delete's empty entry is not one.
        TrashError when the trash folder itself is refused (a symlink)."""
        return [self._load(p) for p in self._entry_folders() if not self._is_debris(p)]

    def get(self, entry_id: str) -> TrashEntry:
        folder = self._entry_folder(entry_id)
        return self._load(folder)

    def _entry_folder(self, entry_id: str) -> Path:
        if not entry_id or "/" in entry_id or entry_id in (".", "..") or os.sep in entry_id:
            raise TrashError(f"{entry_id!r}: not a trash id")
        if not self._check_folder():
            raise TrashError(f"{entry_id}: no such trash entry ({self.folder} does not exist)")
        folder = self.folder / entry_id
        if not folder.is_dir() or folder.is_symlink():
            raise TrashError(f"{entry_id}: no such trash entry in {self.folder}")
        return folder

    # --- restoring / emptying ------------------------------------------------------------------------

    def restore(self, entry_id: str) -> TrashEntry:
        """Rename the item back; refuse when its original place is occupied again, or when a folder on the
        way has become a symlink leading out of ROOT (or into the trash)."""
        folder = self._entry_folder(entry_id)
        entry = self._load(folder)
        if entry.problems:
            raise TrashError(entry.problems[0])
        rel = self._rel(Path(entry.original_path))  # entry.json is data: never trust it to stay in ROOT
        if entry.files is None:
            target = self._restore_target(rel, entry_id)
            if os.path.lexists(target):
                raise TrashError(f"{rel}: exists again; move it away first, then restore {entry_id}")
            *parents, name = target.relative_to(self.root).parts
            try:
                with self._at([TRASH_DIR, entry_id]) as src, self._at(parents, create=True) as dest:
                    os.rename(TRASH_ITEM, name, src_dir_fd=src, dst_dir_fd=dest)
            except OSError as e:
                raise TrashError(f"{rel}: cannot restore {entry_id} ({_why(e)})") from None
        else:
            self._restore_files(folder, entry, rel)
        try:
            remove_tree(folder)
        except FileNotFoundError:
            pass  # a `trash empty` running at the same time removed the emptied entry: it is restored
        return entry

    def _restore_target(self, rel: str, entry_id: str) -> Path:
        """ROOT/rel with every existing folder on the way resolved; TrashError when that leaves ROOT or
        enters the trash. The last component stays as it is (the rename replaces nothing there)."""
        lexical = self.root / rel
        parent = Path(os.path.realpath(lexical.parent))
        if not is_within(parent, self.root) or is_within(parent, self.folder):
            raise TrashError(
                f"{rel}: a folder on the way leads outside {self.root} (a symlink?); refusing to restore {entry_id}"
            )
        return parent / lexical.name

    def _restore_files(self, folder: Path, entry: TrashEntry, rel: str) -> None:
        item = Path(os.path.realpath(folder / TRASH_ITEM))
        files = []
        for f in entry.files or []:
            p = self._restore_target(f"{rel}/{f}", entry.id)
            if not os.path.lexists(folder / TRASH_ITEM / f):
                if os.path.lexists(p):
                    continue  # a slim killed half-way never moved it: it is still in place
                raise TrashError(f"{entry.id}: {f} is missing from the entry; nothing restored")
            files.append(f)
            if not is_within(Path(os.path.realpath((folder / TRASH_ITEM / f).parent)), item):
                raise TrashError(f"{entry.id}: {f} lies behind a symlink in the entry; nothing restored")
            # Slim rewrites the manifest without the dropped files; its own rewrite may be replaced.
            if os.path.lexists(p) and not (f == MANIFEST_NAME and _is_slimmed_manifest(p)):
                raise TrashError(f"{rel}/{f}: exists again; move it away first, then restore {entry.id}")
        for f in files:
            *parents, name = self._restore_target(f"{rel}/{f}", entry.id).relative_to(self.root).parts
            *sub, item_name = f.split("/")
            try:
                with self._at([TRASH_DIR, entry.id, TRASH_ITEM, *sub]) as src, self._at(parents, create=True) as dest:
                    os.replace(item_name, name, src_dir_fd=src, dst_dir_fd=dest)
            except OSError as e:
                raise TrashError(f"{rel}/{f}: cannot restore {entry.id} ({_why(e)})") from None

    def remove(self, entry_id: str) -> int:
        """Delete one entry for good; returns the bytes it held. Only an entry we wrote (a valid
        entry.json), or the empty leftover of a killed delete: anything else found here is not ours."""
        folder = self._entry_folder(entry_id)
        if not self._is_debris(folder) and (entry := self._load(folder)).foreign:
            raise TrashError(f"{entry.problems[0]}; not deleted")
        size = tree_size(folder)
        remove_tree(folder)
        return size

    def empty(self) -> int:
        """Delete every entry we wrote for good; returns the bytes freed."""
        freed = sum(self.remove(e.id) for e in self.list() if not e.foreign)
        self.clean_debris()
        return freed

    def debris(self, now: float | None = None) -> list[str]:
        """Ids of the empty entries killed deletes left, older than a minute (a delete in progress has one
        for an instant); ``remove`` takes them."""
        now = time.time() if now is None else now
        try:
            return [
                f.name
                for f in self._entry_folders()
                if now - os.lstat(f).st_mtime > DEBRIS_QUIET_SECONDS and self._is_debris(f)
            ]
        except (TrashError, OSError):
            return []  # the trash is refused, or another deleter got there first

    def clean_debris(self, now: float | None = None) -> int:
        """Remove the debris (``debris``); returns how many."""
        removed = 0
        for entry_id in self.debris(now):
            try:
                self.remove(entry_id)
                removed += 1
            except (TrashError, OSError):
                pass
        return removed


def _why(e: OSError) -> str:
    if e.errno in (errno.ELOOP, errno.ENOTDIR):
        return "a folder on the way is a symlink or not a folder"
    return e.strerror or str(e)


def _first(e: Exception) -> str:
    return str(e.args[0]) if e.args else type(e).__name__


def _relative_path(value: Any, what: str) -> str:
    """A posix path relative to its base that stays under it; ValueError for anything else."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValueError(f"{what}: not a relative path")
    try:
        os.fsencode(value)  # a lone surrogate that no file name can hold ("\ud800" in JSON)
    except UnicodeEncodeError:
        raise ValueError(f"{what}: not a file name this system can hold") from None
    p = Path(value)
    if p.is_absolute() or any(part in ("..", ".", "") for part in value.split("/")):
        raise ValueError(f"{what}: unsafe path {value[:80]!r}")
    return value


def _file_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ValueError("files: not a list of file names")
    return [_relative_path(f, "files") for f in value]


def _size(value: Any) -> int:
    """size_bytes as written; what is not a finite non-negative number counts as 0 (it is only shown)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    try:
        return max(int(value), 0)
    except (OverflowError, ValueError):
        return 0


def _is_slimmed_manifest(path: Path) -> bool:
    return "slimmed" in (json_object(path) or {})
