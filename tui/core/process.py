"""Is the process that wrote a ``.lock`` still running, and does its lock still count? Shared by the
trainer, the scanner and delete."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from tui.core.files import read_file
from tui.core.names import MANIFEST_NAME

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any

    from tui.core.lock_holder import LockHolder


def __getattr__(name: str) -> Any:
    """``LockHolder`` lives in tui.core.lock_holder, imported on first use: creating a frozen dataclass (six
    methods compiled from source) costs every command's start, and most never judge a lock."""
    if name == "LockHolder":
        from tui.core.lock_holder import LockHolder

        return LockHolder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs on this host. A zombie counts as dead: a trainer SIGKILLed together with
    its launcher is reparented and may wait a while to be reaped, yet it holds nothing any more."""
    if pid <= 0:  # 0 and negatives address process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OverflowError, ValueError):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read(4096)
    except OSError:
        return True  # no /proc (macOS): kill(0) is all we can know
    # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")".
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


# --- run locks -------------------------------------------------------------------------------------------
# A live trainer rewrites its run's .lock every HEARTBEAT_S seconds ({"pid", "host", "started",
# "heartbeat": unix time, "heartbeat_s"}). On the writer's host the pid decides; from another host only
# the heartbeat can tell, and a lock not refreshed for STALE_HEARTBEATS intervals was left by a trainer
# that died (or a node that vanished).
HEARTBEAT_S = 60.0
STALE_HEARTBEATS = 5


def judge_lock(
    data: Any,
    *,
    mtime: float | None,
    now: float,
    hostname: str,
    is_alive: Callable[[int], bool] = pid_alive,
) -> LockHolder:
    """Judge a parsed .lock (``data``: its JSON object) seen at ``now`` from ``hostname``.

    ``mtime`` is the file's modification time: the heartbeat of a lock that records none (a copied
    folder's lock records its own, so a fresh copy does not look alive). A lock with no
    usable pid counts as live: something wrote it, and nothing says it is gone.
    """
    from tui.core.lock_holder import LockHolder  # here: ls of runs without a .lock never creates it

    pid = data.get("pid") if isinstance(data, dict) else None
    host = data.get("host") if isinstance(data, dict) else None
    host = host if isinstance(host, str) and host else None
    if not isinstance(pid, int) or isinstance(pid, bool):
        return LockHolder(None, host, True, "locked by a .lock without a pid; remove it if no trainer runs")
    if host is None or host == hostname:
        if is_alive(pid):
            return LockHolder(pid, host, True, f"held by pid {pid} on {host or hostname} (alive)")
        return LockHolder(pid, host, False, f"stale .lock (pid {pid} on {host or hostname} is not running)")
    interval = data.get("heartbeat_s")
    interval = float(interval) if isinstance(interval, (int, float)) and interval > 0 else HEARTBEAT_S
    beat = data.get("heartbeat")
    if not isinstance(beat, (int, float)) or isinstance(beat, bool):
        beat = mtime  # a lock written before heartbeats existed: its mtime is the last sign of life
    if beat is None:
        return LockHolder(pid, host, True, f"held by pid {pid} on {host} (no heartbeat to check)")
    age = max(now - beat, 0.0)
    if age <= STALE_HEARTBEATS * interval:
        return LockHolder(pid, host, True, f"held by pid {pid} on {host} (heartbeat {age:.0f} s ago)")
    return LockHolder(pid, host, False, f"stale .lock (pid {pid} on {host}: no heartbeat for {age:.0f} s)")


LOCK_READ_LIMIT = 4096  # a lock is a few hundred bytes; more is not a lock we wrote


def read_lock(
    path: str | os.PathLike,
    *,
    now: float | None = None,
    hostname: str | None = None,
    is_alive: Callable[[int], bool] = pid_alive,
) -> LockHolder | None:
    """The holder of the ``.lock`` file at ``path`` judged now (``judge_lock``); None when there is none.

    Our trainer writes a JSON object; other tools' plain pid files are read as ``{"pid": N}``. A lock that
    cannot be read, or names no pid, counts as held: something wrote it and nothing says it is gone."""
    from tui.core.lock_holder import LockHolder  # here: ls of runs without a .lock never creates it

    path = Path(path)
    try:
        text = read_file(path, LOCK_READ_LIMIT)[:LOCK_READ_LIMIT].decode("utf-8", errors="replace")
        mtime: float | None = path.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError as e:
        why = f"locked by an unreadable .lock ({e.strerror}); remove it if no trainer runs"
        return LockHolder(None, None, True, why)
    except ValueError:  # a FIFO or device named .lock: never read, and still a sign of a writer
        return LockHolder(None, None, True, "locked by a .lock that is not a regular file")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = text.strip()
    if isinstance(data, int) or (isinstance(data, str) and data.isdigit()):
        data = {"pid": int(data)}
    if not isinstance(data, dict):
        data = {}
    return judge_lock(
        data,
        mtime=mtime,
        now=time.time() if now is None else now,
        hostname=hostname or _hostname(),
        is_alive=is_alive,
    )


def lock_text(path: str | os.PathLike) -> str | None:
    """Who holds the run whose ``.lock`` is at ``path``, as problem lines quote it; None without a lock."""
    holder = read_lock(path)
    if holder is None:
        return None
    return f"run {holder.why}" if holder.live else holder.why  # "run held by pid 12 on node3 (...)"


def uncommitted_problem(lock: str | None) -> str:
    """The problem of a checkpoint in a run folder without a manifest, quoting the run's lock holder if any."""
    return f"no {MANIFEST_NAME} ({lock or 'never committed: in progress, or killed while writing'})"


def _hostname() -> str:
    import socket  # here: ~2 ms of start-up that only a .lock needs

    return socket.gethostname()
