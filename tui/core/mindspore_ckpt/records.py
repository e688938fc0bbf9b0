"""The records of a MindSpore checkpoint: ``MindSporeTensor``, ``MindSporeReport``, MindSpore's tensor types,
and which tensors are optimizer state (the package docstring has the rules)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from tui.core.split_weights import SplitWeights

# MindSpore tensor_type -> (the dtype name reported: safetensors' where it has one; bits per element, None
# for a packed type whose byte length is not checked).
MINDSPORE_TYPES: dict[str, tuple[str, int | None]] = {
    "Float32": ("F32", 32),
    "Float16": ("F16", 16),
    "BFloat16": ("BF16", 16),
    "Float64": ("F64", 64),
    "Int8": ("I8", 8),
    "UInt8": ("U8", 8),
    "Int16": ("I16", 16),
    "UInt16": ("U16", 16),
    "Int32": ("I32", 32),
    "UInt32": ("U32", 32),
    "Int64": ("I64", 64),
    "UInt64": ("U64", 64),
    "Bool": ("BOOL", 8),
    "Int4": ("qint4x2", None),  # packed; MindSpore's layout is not checked
}
STRING_TYPE = "str"

# Names MindSpore optimizers and training wrappers save beside the network's parameters.
OPTIMIZER_SCALARS = frozenset(
    "global_step learning_rate beta1_power beta2_power momentum loss_scale scale_sense weight_decay "
    "epoch_num step_num current_iterator_step last_overflow_iterator_step".split()
)
OPTIMIZER_SLOTS = frozenset(
    "moment1 moment2 moments moment accum mean_square mean_grad vhat exp_avg exp_avg_sq adam_m adam_v "
    "linear".split()
)


@dataclass
class MindSporeTensor:
    name: str
    mindspore_type: str  # as written ("Float32")
    dtype: str  # the safetensors name ("F32"); MindSpore's own when safetensors has none
    shape: tuple[int, ...] | None  # from the dims; None when they are unusable (a problem says why)
    offset: int  # file offset of the first value holding it
    nbytes: int = 0  # tensor_content bytes present, all slices together
    slices: list[tuple[int, int]] = field(default_factory=list)  # (file offset, length) of each content
    role: Literal["network", "optimizer"] = "network"

    @property
    def numel(self) -> int | None:
        return math.prod(self.shape) if self.shape is not None else None

    @property
    def expected_nbytes(self) -> int | None:
        bits = MINDSPORE_TYPES.get(self.mindspore_type, ("", None))[1]
        numel = self.numel
        if bits is None or numel is None or (numel * bits) % 8:
            return None
        return numel * bits // 8


@dataclass
class MindSporeReport(SplitWeights):
    source: ClassVar[Literal["mindspore"]] = "mindspore"  # vs WeightsSummary.source / PickleReport.source
    format: Literal["mindspore", "encrypted", "not-mindspore"] = "mindspore"
    file_size: int = 0
    bytes: int = 0  # network tensor_content bytes
    scalars: dict[str, float | int] = field(default_factory=dict)
    strings: dict[str, str] = field(default_factory=dict)
    crc: int | None = None  # stored by crc_check=True
    crc_ok: bool | None = None  # None: not verified
    unsupported: str | None = None  # why the contents could not be read (encrypted, unknown fields)

    def entry_json(self, t: MindSporeTensor) -> dict[str, Any]:
        return {**super().entry_json(t), "bytes": t.nbytes}

    @staticmethod
    def entry_from_json(data: dict[str, Any]) -> MindSporeTensor:
        shape = tuple(data["shape"]) if data["shape"] is not None else None
        return MindSporeTensor(**{**data, "shape": shape, "slices": [tuple(p) for p in data["slices"]]})


def summarize(report: MindSporeReport) -> None:
    """Mark optimizer state, then count the network and the optimizer apart into ``report``."""
    names = {t.name for t in report.entries}
    for t in report.entries:
        head, _, rest = t.name.partition(".")
        if t.name in OPTIMIZER_SCALARS or (rest and (head in OPTIMIZER_SLOTS or rest in names)):
            t.role = "optimizer"
    report.count()
    report.bytes = sum(t.nbytes for t in report.network())
