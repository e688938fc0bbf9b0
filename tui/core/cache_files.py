"""The summary cache's files on disk (``tui.core.cache`` decides what goes in them): a first line naming the
format and the CRC32 of the rest, written whole to a temp name and renamed over the old file, read back
bounded; a pack (every folder of a scanned root in one zlib-compressed file, written and read a piece at a
time); the least-recently-used sweep."""

from __future__ import annotations

import _thread  # threading's Lock, local and get_ident, without importing threading (~1 ms of every start)
import json
import os
import stat
import time
import zlib
from collections.abc import Iterable, Iterator

from tui.core.files import read_bounded

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any

FORMAT = "ckpt-tui-cache 1"  # the first line of every cache file, before its CRC32
PACK_FORMAT = "ckpt-tui-pack 2"  # the same for the one file of a scanned root (use_pack); zlib body
MAX_PACK_TEXT = 1 << 30  # what a pack may expand to (a corrupt or foreign file never goes past it)
TOUCH_AFTER_SECONDS = 86400


def sweep(directory: str, max_bytes: int) -> int:
    """Delete the least recently used cache files until the total is under 3/4 of ``max_bytes``; also
    stale temp files of writers that died. Returns the bytes left."""
    files: list[tuple[float, int, str]] = []
    now = time.time()
    try:
        subdirs = [e.path for e in os.scandir(directory) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return 0
    for sub in subdirs:
        try:
            with os.scandir(sub) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if e.name.endswith(".tmp") and now - st.st_mtime > 600:
                        _unlink(e.path)
                    elif e.name.endswith(".cache"):
                        files.append((st.st_mtime, st.st_size, e.path))
        except OSError:
            continue
    total = sum(size for _, size, _ in files)
    if total <= max_bytes:
        return total
    for _, size, path in sorted(files):
        if total <= max_bytes * 3 // 4:
            break
        if _unlink(path):
            total -= size
    return total


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


_PACK = b"pack\0"  # what a pack file's name is derived from, before its root: never a folder's name


def _is_under(folder: str, root: str) -> bool:
    return folder == root or folder.startswith(root if root.endswith(os.sep) else root + os.sep)


PACK_PIECE = 1 << 16  # text compressed at once by _write_pack (zlib's per-call cost vs memory)


def _pack_pieces(root: str, buckets: Iterable[tuple[str, Any]]) -> Iterator[bytes]:
    """The text of a pack (the root's line, then each folder's line and entry lines, joined by newlines)
    as UTF-8 pieces of about PACK_PIECE bytes, each ending at a line's end."""
    lines, size = [json.dumps(root)], 0
    for folder, bucket in buckets:
        entries = _entry_lines(bucket)
        if not entries:
            continue
        lines.append(json.dumps(folder))
        lines += entries
        size += sum(map(len, entries))
        if size >= PACK_PIECE:
            yield "\n".join(lines).encode("utf-8", "surrogatepass")
            lines, size = [""], 0  # the next piece starts with the newline that ends this one
    if lines != [""]:
        yield "\n".join(lines).encode("utf-8", "surrogatepass")


def _entry_lines(bucket: Any) -> list[str]:  # a cache._Bucket: its entries
    return [f"{reader}\t{keys}\t{value}" for reader, (keys, value, racy) in bucket.entries.items() if not racy]


def _read_cache_file(path: str, limit: int) -> bytes | None:
    """A cache file's bytes (touched when it has not been for a day, so the sweep keeps what is used);
    None when it is missing, not a regular file, or over ``limit``."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        raw = read_bounded(fd, st.st_size, st.st_size)  # one more than stat says: a file still growing shows
    except OSError:
        return None
    finally:
        os.close(fd)
    if time.time() - st.st_mtime > TOUCH_AFTER_SECONDS:
        try:
            os.utime(path)
        except OSError:
            pass
    return raw


def _write_cache_file(path: str, form: str, body: bytes) -> None:
    """``form`` and the CRC32 of ``body`` on the first line, then ``body``: written whole to a temp name and
    renamed over ``path`` (atomic, also on NFS)."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{_thread.get_ident()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(f"{form} {zlib.crc32(body):08x}\n".encode() + body)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _crc_checked(raw: bytes, form: str) -> bytes | None:
    """What follows the first line, when that line names ``form`` and the CRC32 of the rest."""
    head, sep, body = raw.partition(b"\n")
    parts = head.decode("ascii", "replace").rsplit(" ", 1)
    if not sep or len(parts) != 2 or parts[0] != form:
        return None
    try:
        return body if int(parts[1], 16) == zlib.crc32(body) else None
    except ValueError:
        return None


def _checked_body(raw: bytes, form: str) -> list[str] | None:
    """The lines after the first of a folder's file, when intact (``_crc_checked``)."""
    body = _crc_checked(raw, form)
    try:
        return body.decode("utf-8", "surrogatepass").split("\n") if body is not None else None
    except ValueError:
        return None


PACK_READ = 1 << 20  # text inflated at once by _pack_lines


def _pack_lines(body: bytes) -> Iterator[str]:
    """The lines of a pack's zlib ``body``, inflated a piece at a time: the text of 10,000 checkpoints is
    ~34 MB, which whole (bytes, then text, then its lines) took ~100 MB next to the entries made of it.
    ValueError when it is cut short or expands past MAX_PACK_TEXT (a bomb)."""
    inflate = zlib.decompressobj()
    pending, size, data = b"", 0, body
    while True:
        out = inflate.decompress(data, PACK_READ)
        data = inflate.unconsumed_tail
        size += len(out)
        if size > MAX_PACK_TEXT:
            raise ValueError("pack expands past MAX_PACK_TEXT")
        pending += out
        if inflate.eof or (not data and not out):
            break
        cut = pending.rfind(b"\n")
        if cut >= 0:
            yield from pending[:cut].decode("utf-8", "surrogatepass").split("\n")
            pending = pending[cut + 1 :]
    if not inflate.eof:
        raise ValueError("pack cut short")
    yield from pending.decode("utf-8", "surrogatepass").split("\n")


def _decode_pack(raw: bytes, root: str, under: str) -> dict[str, dict[str, tuple[str, str, float]]] | None:
    """folder -> entries of an intact pack file of ``root``, for the folders under ``under``."""
    body = _crc_checked(raw, PACK_FORMAT)
    if body is None:
        return None
    try:
        lines = _pack_lines(body)
        if json.loads(next(lines)) != root:
            return None
        out: dict[str, dict[str, tuple[str, str, float]]] = {}
        entries: dict[str, tuple[str, str, float]] | None = None
        for line in lines:
            if line.startswith('"'):
                folder = json.loads(line)
                entries = out.setdefault(folder, {}) if _is_under(folder, under) else None
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                return None
            if entries is not None:
                entries[fields[0]] = (fields[1], fields[2], 0)
    except (ValueError, RecursionError, StopIteration, zlib.error):
        return None
    return out


def _decode_bucket(raw: bytes, folder: str) -> dict[str, tuple[str, str, float]] | None:
    """Entries of a cache file, or None when it is not an intact file of ours for ``folder``.

    Layout: ``ckpt-tui-cache N <crc32 of the rest>``, the folder as a JSON string, then one line per
    entry: ``reader TAB keys TAB value``, keys and value as JSON text (which never holds a raw tab or
    newline). Keys are compared as text and a value is parsed only when used."""
    lines = _checked_body(raw, FORMAT)
    try:
        if lines is None or json.loads(lines[0]) != folder:
            return None
    except (ValueError, RecursionError):
        return None
    entries: dict[str, tuple[str, str, float]] = {}
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) != 3:
            return None
        entries[fields[0]] = (fields[1], fields[2], 0)
    return entries
