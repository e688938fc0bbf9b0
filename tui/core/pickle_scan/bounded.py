"""What the scanner keeps between files within a process (shared replays, zip directory and float
templates): an insertion-ordered memo that drops its oldest entries past a count or a byte budget, and
the masked-integer test of "these bytes equal those, except in these holes"."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any


class Bounded:
    """key -> value, at most ``max_items`` entries and ``max_bytes`` (each entry's size given when put);
    the oldest go first. Lookups take no lock (a dict read is atomic); changes take one."""

    def __init__(self, *, max_items: int = 1 << 62, max_bytes: int = 1 << 62) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self._entries: dict[Any, tuple[Any, int]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        entry = self._entries.get(key)
        return entry[0] if entry is not None else None

    def __contains__(self, key: Any) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._entries))

    def values(self) -> list[Any]:
        return [value for value, _ in list(self._entries.values())]

    def put(self, key: Any, value: Any, size: int = 0, *, replace: bool = False) -> None:
        """Keep ``value`` under ``key`` (an existing entry stays unless ``replace``: then it moves last)."""
        with self._lock:
            if key in self._entries:
                if not replace:
                    return
                self._bytes -= self._entries.pop(key)[1]
            self._entries[key] = (value, size)
            self._bytes += size
            while len(self._entries) > self.max_items or self._bytes > self.max_bytes:
                self._bytes -= self._entries.pop(next(iter(self._entries)))[1]

    def pop(self, key: Any) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._bytes -= entry[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


def masked(raw: bytes, holes: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """(mask, raw & mask) as integers, the mask zero over each (start, length) hole: bytes of the same
    length equal ``raw`` outside the holes exactly when ``int.from_bytes(b, "little") & mask`` is the
    second (one C-level pass over tens of kilobytes)."""
    mask = bytearray(b"\xff") * len(raw)
    for start, length in holes:
        mask[start : start + length] = bytes(length)
    as_int = int.from_bytes(mask, "little")
    return as_int, int.from_bytes(raw, "little") & as_int
