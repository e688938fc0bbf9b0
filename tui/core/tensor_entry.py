"""``TensorEntry``, one tensor of a safetensors header as an object (``SafetensorsHeader.tensors``); kept
apart from tui.core.safetensors_header (which re-exports it) so that reading headers, which needs only the
compact entries, does not create this dataclass at every start."""

from __future__ import annotations

from dataclasses import dataclass, field

from tui.core.safetensors_dtypes import DTYPE_BITS

__all__ = ["TensorEntry"]


@dataclass(slots=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # offsets relative to the start of the data section (after 8 + header_len bytes)
    end: int
    numel: int = field(init=False, repr=False, compare=False)  # product of shape, computed once

    def __post_init__(self) -> None:
        n = 1
        for d in self.shape:
            n *= d
        self.numel = n

    @property
    def nbytes(self) -> int:
        """Bytes the header assigns to this tensor."""
        return self.end - self.start

    @property
    def expected_nbytes(self) -> int | None:
        """Bytes numel * itemsize needs; None when a packed dtype does not end on a byte boundary."""
        bits = self.numel * DTYPE_BITS[self.dtype]
        return None if bits % 8 else bits // 8
