"""The checkpoint commit protocol (docs/FORMAT.md, "Commit protocol").

A checkpoint folder is written into a temp folder beside its target, every file is fsynced, the temp
folder is renamed into place, the parent is fsynced, and only then is ``ckpt_manifest.json`` written
(atomically, last). A folder without a valid manifest was never committed. Standard library only: the
trainer (which has torch) and the browser (which must not) share this module.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tui.core import readlog
from tui.core.files import FULL_WALK_DEPTH, open_regular_file, read_file, read_refusal, walk
from tui.core.names import MANIFEST_NAME
from tui.core.text import capped

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any

MANIFEST_FORMAT = "ckpt-tui/manifest/1"
TMP_MARK = ".tmp"
OLD_MARK = ".old"
_HASH_CHUNK = 8 << 20
_UNIQUE_TOKEN = re.compile(r"\.[0-9a-f]{12}$")


def utc_now() -> str:
    """Now as ISO 8601 UTC to the second ("2026-12-02T10:11:12Z"): every time stamp our files hold."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ManifestError(ValueError):
    """A manifest that exists but cannot be trusted."""


def tmp_path_for(target: Path) -> Path:
    """The one temp folder name for ``target``; deterministic so that every rank agrees on it."""
    target = Path(target)
    return target.parent / f".{target.name}{TMP_MARK}"


def old_path_for(target: Path) -> Path:
    target = Path(target)
    return target.parent / f".{target.name}{OLD_MARK}"


def unique_temp_for(target: Path, mark: str = TMP_MARK) -> Path:
    """A fresh empty folder ``.<name>.<random><mark>`` beside ``target``, created by this call (mkdir is
    exclusive): for writers that are not alone (promote), which must never touch another's temp folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    import secrets  # here and in _rmtree: the scan reads manifests through this module, and writes nothing

    for _ in range(100):
        path = target.parent / f".{target.name}.{secrets.token_hex(6)}{mark}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{target.parent}: no free temp name for {target.name}")


def is_temp_name(name: str) -> bool:
    """True for names this protocol leaves behind when a writer dies mid-way."""
    return name.startswith(".") and (name.endswith(TMP_MARK) or name.endswith(OLD_MARK))


def target_name_of_temp(name: str) -> str | None:
    if not is_temp_name(name):
        return None
    stem = name[1:]
    for mark in (TMP_MARK, OLD_MARK):
        if stem.endswith(mark):
            return _UNIQUE_TOKEN.sub("", stem[: -len(mark)])  # .<name>.<token>.tmp of unique_temp_for
    return None


def recover(target: Path) -> bool:
    """Undo a replace killed between its two renames: put the parked committed folder back.

    Returns True when something was restored. Only a parked folder that still verifies is restored.
    """
    target, old = Path(target), old_path_for(target)
    if target.exists() or not old.is_dir() or verify(old):
        return False
    os.replace(old, target)
    fsync_path(target.parent)
    return True


def begin(target: Path) -> Path:
    """Create a fresh, empty temp folder for ``target`` (removing a stale one of the same target)."""
    recover(target)
    tmp = tmp_path_for(target)
    if tmp.exists():
        _rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _sha256(data: bytes | memoryview = b"") -> Any:
    """A sha256 hasher. hashlib is imported here: it loads OpenSSL (~3 ms), which every command importing
    this module (``inspect`` reads manifests) paid for, and which only hashing needs."""
    import hashlib

    return hashlib.sha256(data)


def sha256_file(path: Path) -> str:
    h = _sha256()
    fd, _ = open_regular_file(path)  # a FIFO or a link to /dev/zero: ValueError, never a hang
    with os.fdopen(fd, "rb", buffering=0) as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def write_bytes_hashed(path: Path, data: bytes | memoryview) -> str:
    """Write ``data`` to ``path`` and return its sha256, so the commit need not read it back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return _sha256(data).hexdigest()


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by path (a folder: so that a rename in it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _files_under(folder: Path) -> list[Path]:
    out = []
    for dirpath, _dirnames, filenames in walk(folder, max_depth=FULL_WALK_DEPTH):
        out += [p for name in filenames if (p := Path(dirpath, name)).is_file() and not p.is_symlink()]
    return sorted(out)


def commit(
    tmp: Path,
    target: Path,
    *,
    kind: str,
    hashes: dict[str, str] | None = None,
    fields: dict[str, Any] | None = None,
    old: Path | None = None,
) -> dict[str, Any]:
    """Move a fully written ``tmp`` folder to ``target`` and mark it complete.

    ``hashes`` maps posix paths relative to ``tmp`` to sha256 digests already known to the caller; any
    other file is hashed here. An existing ``target`` is replaced: it is first renamed aside, so a kill
    at any moment leaves either the old committed folder, or the new one, plus a temp folder.
    ``old``: an empty folder from ``unique_temp_for(target, OLD_MARK)`` to park it in (promote); without
    one, the deterministic ``.<name>.old`` is used and a stale one removed (the trainer's single writer).
    """
    tmp, target = Path(tmp), Path(target)
    known = dict(hashes or {})
    files: dict[str, dict[str, Any]] = {}
    for path in _files_under(tmp):
        rel = path.relative_to(tmp).as_posix()
        if rel == MANIFEST_NAME:
            continue
        digest = known.get(rel) or sha256_file(path)
        files[rel] = {"size": path.stat().st_size, "sha256": digest}
        fsync_path(path)
    for folder in sorted({p.parent for p in _files_under(tmp)} | {tmp}, key=lambda p: -len(p.parts)):
        fsync_path(folder)

    own_old = old is not None
    old = Path(old) if old is not None else old_path_for(target)
    if not own_old and old.exists():
        _rmtree(old)
    parked = target.exists()
    if parked:
        os.replace(target, old)  # onto our own empty folder when given: a rename replaces an empty one
    os.replace(tmp, target)
    fsync_path(target.parent)

    manifest = {
        "format": MANIFEST_FORMAT,
        "kind": kind,
        "created": utc_now(),
        **(fields or {}),
        "files": files,
    }
    try:
        write_json_atomic(target / MANIFEST_NAME, manifest)
    except BaseException:
        # A full disk (ENOSPC) or a signal while writing the manifest: the new folder never became
        # committed, so put it back where it came from and the previous committed one back in place.
        os.replace(target, tmp)
        if parked:
            os.replace(old, target)
        fsync_path(target.parent)
        raise
    if old.is_dir() and not old.is_symlink():
        _rmtree(old)
    return manifest


@contextmanager
def atomic_dir(target: Path, *, kind: str, fields: dict[str, Any] | None = None) -> Iterator[Path]:
    """Single-writer convenience: yields the temp folder; commits on success, removes it on error."""
    tmp = begin(target)
    try:
        yield tmp
        commit(tmp, target, kind=kind, fields=fields)
    except BaseException:
        _rmtree(tmp, ignore_errors=True)  # a failed commit has put the previous folder back
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON via a temp file + fsync + rename, then fsync the folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, None when it has none; ManifestError when it is present but invalid."""
    path = Path(folder) / MANIFEST_NAME
    try:
        raw = read_file(path, 64 << 20)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ManifestError(f"{MANIFEST_NAME}: unreadable ({e.strerror})") from None
    except ValueError as e:
        raise ManifestError(f"{MANIFEST_NAME}: {e}") from None
    if len(raw) > 64 << 20:
        raise ManifestError(f"{MANIFEST_NAME}: larger than 64 MiB")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ManifestError(f"{MANIFEST_NAME}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{MANIFEST_NAME}: not a {MANIFEST_FORMAT} manifest")
    files = data.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("size"), int) and isinstance(v.get("sha256"), str)
        for v in files.values()
    ):
        raise ManifestError(f"{MANIFEST_NAME}: 'files' must map paths to {{size, sha256}}")
    return data


def verify(
    folder: Path,
    *,
    check_hashes: bool = False,
    manifest: dict[str, Any] | None = None,
    root: Path | None = None,
) -> list[str]:
    """Problems that make ``folder`` not a complete committed checkpoint; [] when it is one.
    ``manifest``: the folder's manifest when the caller has read it already. ``root``: an entry that leads
    outside it through a symlink is a problem and is never read (hashing it would read someone's file)."""
    folder = Path(folder)
    real_root = Path(os.path.realpath(root)) if root is not None else None
    if manifest is None:
        try:
            manifest = read_manifest(folder)
        except ManifestError as e:
            return [str(e)]
    if manifest is None:
        return [f"no {MANIFEST_NAME}: never committed (in progress or killed while writing)"]
    problems: list[str] = []
    missing: list[str] = []
    for rel, meta in manifest["files"].items():
        path = folder / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            problems.append(f"{MANIFEST_NAME}: unsafe path {rel!r}")
            continue
        if real_root is not None and os.path.lexists(path) and (why := read_refusal(path, real_root)):
            problems.append(f"{rel}: {why}")
            continue
        try:
            st = path.stat()
        except OSError:
            st = None
        if readlog.noting():  # an entry under a linked folder lies where the walk does not go
            (readlog.note if st is not None else readlog.note_lookup)(os.fspath(path), st)
        if st is None:
            missing.append(rel)
            continue
        size = st.st_size
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a link to /dev/zero has the size 0 a manifest may list
            problems.append(f"{rel}: not a regular file")
        elif size != meta["size"]:
            problems.append(f"{rel}: {size} bytes on disk, {meta['size']} in {MANIFEST_NAME}")
        elif check_hashes:
            try:
                digest = sha256_file(path)
            except (OSError, ValueError) as e:  # a link to /dev/zero has the size 0 a manifest may list
                problems.append(f"{rel}: cannot be hashed ({getattr(e, 'strerror', None) or e})")
                continue
            if digest != meta["sha256"]:
                problems.append(f"{rel}: sha256 differs from {MANIFEST_NAME}")
    if len(missing) > 5:
        shown = ", ".join(missing[:5])
        problems.insert(
            0,
            f"{len(missing)} files listed in {MANIFEST_NAME} but missing: {shown} and {len(missing) - 5} more",
        )
    else:
        problems[:0] = [f"{rel}: listed in {MANIFEST_NAME} but missing" for rel in missing]
    return capped(problems)


def _rmtree(path: Path, **kw: Any) -> None:
    import shutil

    shutil.rmtree(path, **kw)
