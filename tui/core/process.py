"""Is the process that wrote a ``.lock`` still running? Shared by the trainer, the scanner and delete."""

from __future__ import annotations

import os


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
