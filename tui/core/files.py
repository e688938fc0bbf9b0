"""Reading the small files beside checkpoints, and path containment: the one home of bounded reads.

Every reader here is bounded in bytes and turns what cannot be used into a one-line problem that names
the file, never an exception; the trainer's readers, which must stop on a bad file, raise their own
error class with the same line (``read_json_dict``). Standard library only, with orjson when present
(``loads_json``).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from tui.core.text import first_line

try:
    import orjson
except ImportError:  # no wheel for this platform: the standard library parses everything
    orjson = None

JSON_LIMIT = 16 << 20  # a config.json; callers pass more for tokenizers, trainer states, manifests
SMALL_TEXT_LIMIT = 4096  # pointer files: DeepSpeed's `latest`, a `.lock`


def is_within(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies under it (lexically: resolve both first where links matter)."""
    return path == folder or folder in path.parents


def allocated_bytes(st: os.stat_result) -> int | None:
    """The bytes a file occupies on disk (what deleting it frees): less than ``st_size`` for a sparse
    or compressed file. None where the platform does not say (no ``st_blocks``)."""
    blocks = getattr(st, "st_blocks", None)
    return blocks * 512 if isinstance(blocks, int) else None  # st_blocks counts 512-byte units (POSIX)


def open_regular_file(path: str | os.PathLike) -> tuple[int, int]:
    """``(fd, size)`` for a regular file, opened without blocking (a FIFO named like a checkpoint file must
    not hang us). Raises OSError, or ValueError for something that is not a regular file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        return fd, st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_head(path: str | os.PathLike, n: int = 16) -> bytes:
    """The first ``n`` bytes of a regular file (what its format says about itself); b"" when it cannot be
    read or is not a regular file."""
    try:
        fd, _ = open_regular_file(path)
    except (OSError, ValueError):
        return b""
    try:
        return os.read(fd, n)
    except OSError:
        return b""
    finally:
        os.close(fd)


def read_bounded(fd: int, size: int, limit: int) -> bytes:
    """Up to ``limit`` + 1 bytes of ``fd`` (one more than allowed says "too big"), in reads sized by the
    ``size`` fstat gave: ``f.read(limit + 1)`` would allocate the whole limit (64 MiB) for a 20 KB file."""
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = os.read(fd, min(limit + 1 - total, max(size + 1 - total, 1 << 16)))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def load_json(path: Path | str, *, limit: int = JSON_LIMIT) -> tuple[Any, str | None]:
    """(data, None) or (None, "<name>: <problem>"); (None, None) when the file does not exist."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        try:
            raw = read_bounded(fd, os.fstat(fd).st_size, limit)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"{path.name}: unreadable ({e.strerror or e})"
    if len(raw) > limit:
        return None, f"{path.name}: larger than {limit >> 20} MiB, not read"
    if not raw.strip():
        return None, f"{path.name}: empty file"
    try:
        return loads_json(raw), None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        return None, f"{path.name}: invalid JSON ({first_line(e)})"


# Digits -> "0", anything else -> " ": a run of 19 digits is then a plain substring search (a regex takes
# 15x longer on digit-dense files such as trainer_state.json).
_DIGITS_ONLY = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_RUN = b"0" * 19


def loads_json(raw: bytes) -> Any:
    """``json.loads(raw)``, exactly (same values, same errors), 3-5x faster where orjson can say the same:
    orjson refuses NaN/Infinity, out-of-range floats, lone surrogates, a BOM, UTF-16 and deep nesting, and
    turns integers beyond 64 bits into floats; each of those (any run of 19 digits, for the last) is left
    to the standard library, which also words every error."""
    if orjson is not None and _LONG_RUN not in raw.translate(_DIGITS_ONLY):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def load_json_object(path: Path | str, *, limit: int = JSON_LIMIT) -> tuple[dict[str, Any] | None, list[str]]:
    """(the JSON object, []) or (None, [one-line problem]); (None, []) when the file does not exist."""
    data, problem = load_json(path, limit=limit)
    if problem is not None:
        return None, [problem]
    if data is not None and not isinstance(data, dict):
        return None, [f"{Path(path).name}: not a JSON object"]
    return data, []


def json_object(path: Path | str, *, limit: int = JSON_LIMIT) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is missing, unreadable, not JSON or not an object."""
    data, _ = load_json(path, limit=limit)
    return data if isinstance(data, dict) else None


def read_json_dict(
    path: Path | str, error: type[Exception], hint: str = "", *, limit: int = JSON_LIMIT
) -> dict[str, Any] | None:
    """The JSON object in ``path``, None when the file does not exist; raises ``error`` with one line
    ("<path>: <problem><hint>") when it exists but is not a readable JSON object."""
    data, problem = load_json(path, limit=limit)
    if problem is not None:
        raise error(f"{path}: {problem.partition(': ')[2]}{hint}")
    if data is not None and not isinstance(data, dict):
        raise error(f"{path}: not a JSON object{hint}")
    return data


def read_small_text(path: Path | str, limit: int = SMALL_TEXT_LIMIT) -> str | None:
    """The text of a small pointer file (undecodable bytes replaced); None when it is missing, unreadable,
    not a file or larger than ``limit``."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size > limit:
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
