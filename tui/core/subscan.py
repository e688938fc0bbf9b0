"""A first scan in a process of its own, streamed back: the app's scan runs on a thread beside the UI, where
it gets one core (the GIL) and cannot fork (``tui.core.forked``: a fork copies one thread of many). A
fresh process can: it scans as ``ckpt-tui ls`` does, reading on every core, writes the snapshot and the
summary cache at its end, and sends each record as it comes, one JSON line (``CheckpointInfo.to_json``:
data, never a pickle), then a last line saying it finished. The app's later scans replay that snapshot.

Whoever reads the stream gets every record or learns that it did not: a child that cannot start, dies,
or sends a line that does not parse is stopped, and ``Subscan.records`` raises ``SubscanFailed`` (the caller
scans in-process; the app's store takes a record twice as an update). Run as
``python -m tui.core.subscan ROOT``.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

from tui.core.model import CheckpointInfo

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

DONE = b'{"done":true}'
FLUSH_SECONDS = 0.02  # the child sends what it has at least this often (the app shows rows as they come)
WAIT_SECONDS = 0.1  # how long a read waits before it looks at ``cancelled`` again


class SubscanFailed(Exception):
    """The child did not send a whole scan."""


class Subscan:
    """A child process scanning ``root``, started at once (while the app builds its screen)."""

    def __init__(self, root: str | os.PathLike) -> None:
        from tui.core import cache

        parent = _package_parent()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (parent, os.environ.get("PYTHONPATH")) if p)}
        if cache.shared().directory is None:  # --no-cache in this process: none in the child either
            env[cache.ENV_DISABLE] = "1"
        try:
            self.child: subprocess.Popen | None = subprocess.Popen(
                _command(os.path.abspath(os.fspath(root))),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        except OSError as e:
            raise SubscanFailed(f"cannot start: {e}") from None

    def records(self, *, cancelled: Callable[[], bool] = lambda: False) -> Iterator[CheckpointInfo]:
        """Every checkpoint the child finds, as it sends them; SubscanFailed when it does not send all."""
        from tui.core.files import loads_json

        if self.child is None or self.child.stdout is None:
            raise SubscanFailed("already read")
        finished = False
        try:
            for line in _lines(self.child.stdout, cancelled):
                if line == DONE:
                    finished = True
                    break
                try:
                    yield CheckpointInfo.from_json(loads_json(line))
                except (KeyError, TypeError, ValueError, AttributeError) as e:
                    raise SubscanFailed(f"a record that does not parse ({type(e).__name__})") from None
            if not finished and not cancelled():
                raise SubscanFailed("the child stopped before the end of its scan")
        finally:
            self.close(stop=not finished)

    def close(self, *, stop: bool = True) -> None:
        """Reap the child (``stop``: kill it first: its records are wanted no more)."""
        child, self.child = self.child, None
        if child is None:
            return
        if stop:
            child.kill()
        if child.stdout is not None:
            child.stdout.close()
        child.wait()


def _command(root: str) -> list[str]:
    return [sys.executable, "-m", "tui.core.subscan", root]


def _lines(stream: Any, cancelled: Callable[[], bool]) -> Iterator[bytes]:
    fd = stream.fileno()
    while not cancelled():
        ready, _, _ = select.select([fd], [], [], WAIT_SECONDS)
        if not ready:
            continue
        line = stream.readline()  # the child writes whole lines
        if not line:
            return
        yield line.rstrip(b"\n")


def _package_parent() -> str:
    import tui

    return os.path.dirname(os.path.dirname(os.path.abspath(tui.__file__)))


def main(argv: list[str]) -> int:
    """The child: scan ``argv[0]`` and stream the records to stdout (anything else printed goes nowhere)."""
    from tui.core.files import dumps_json
    from tui.core.forked import default_processes
    from tui.core.snapshot import iter_checkpoints

    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    lines: list[bytes] = []
    due = time.monotonic() + FLUSH_SECONDS
    for info in iter_checkpoints(argv[0], processes=default_processes()):
        lines.append(dumps_json(info.to_json()).encode("utf-8", "surrogatepass"))
        if time.monotonic() >= due:
            out.write(b"\n".join(lines) + b"\n")
            out.flush()
            lines, due = [], time.monotonic() + FLUSH_SECONDS
    out.write(b"".join(line + b"\n" for line in lines) + DONE + b"\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
