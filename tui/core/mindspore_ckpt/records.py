"""The records of a MindSpore checkpoint: ``MindSporeTensor``, ``MindSporeReport``, MindSpore's tensor types,
and which tensors are optimizer state (the package docstring has the rules)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from tui.core.weights import largest_tensors, module_counts

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
    dims: tuple[int, ...] | None  # None: unusable dims (a problem says why)
    offset: int  # file offset of the first value holding it
    nbytes: int = 0  # tensor_content bytes present, all slices together
    slices: list[tuple[int, int]] = field(default_factory=list)  # (file offset, length) of each content
    role: Literal["network", "optimizer"] = "network"

    @property
    def numel(self) -> int | None:
        if self.dims is None:
            return None
        n = 1
        for d in self.dims:
            n *= d
        return n

    @property
    def expected_nbytes(self) -> int | None:
        bits = MINDSPORE_TYPES.get(self.mindspore_type, ("", None))[1]
        numel = self.numel
        if bits is None or numel is None or (numel * bits) % 8:
            return None
        return numel * bits // 8


@dataclass
class MindSporeReport:
    source: ClassVar[Literal["mindspore"]] = "mindspore"  # vs WeightsSummary.source / PickleReport.source
    format: Literal["mindspore", "encrypted", "not-mindspore"]
    file_size: int = 0
    entries: list[MindSporeTensor] = field(default_factory=list)  # every tensor, file order
    tensors: int = 0  # network tensors
    parameters: int = 0  # network parameters (numel)
    dtypes: dict[str, int] = field(default_factory=dict)  # network dtype -> parameters
    optimizer_tensors: int = 0
    optimizer_parameters: int = 0
    modules: dict[str, int] = field(default_factory=dict)
    module_prefix: str = ""
    largest: list[dict[str, Any]] = field(default_factory=list)
    bytes: int = 0  # network tensor_content bytes
    scalars: dict[str, float | int] = field(default_factory=dict)
    strings: dict[str, str] = field(default_factory=dict)
    crc: int | None = None  # stored by crc_check=True
    crc_ok: bool | None = None  # None: not verified
    problems: list[str] = field(default_factory=list)
    unsupported: str | None = None  # why the contents could not be read (encrypted, unknown fields)

    def network(self) -> list[MindSporeTensor]:
        return [t for t in self.entries if t.role == "network"]

    def tensor_table(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """name -> (dtype, shape) of the network tensors (what a diff compares)."""
        return {t.name: (t.dtype, t.dims) for t in self.network() if t.dims is not None}

    def inspect_json(self) -> dict[str, Any]:
        """What ``inspect --json`` prints under "weights" for a MindSpore checkpoint."""
        out = {k: v for k, v in vars(self).items() if k != "entries"}
        out["format"] = self.format
        out["entries"] = [
            {
                "name": t.name,
                "dtype": t.dtype,
                "shape": list(t.dims) if t.dims is not None else None,
                "role": t.role,
                "bytes": t.nbytes,
            }
            for t in self.entries[:200]
        ]
        out["largest"] = [dict(t) for t in self.largest]
        return out


def summarize(report: MindSporeReport) -> None:
    """Mark optimizer state, then count the network and the optimizer apart into ``report``."""
    names = {t.name for t in report.entries}
    for t in report.entries:
        head, _, rest = t.name.partition(".")
        if t.name in OPTIMIZER_SCALARS or (rest and (head in OPTIMIZER_SLOTS or rest in names)):
            t.role = "optimizer"
    network = [t for t in report.entries if t.role == "network"]
    counted = [(t, t.numel) for t in network if t.numel is not None]
    report.tensors = len(network)
    report.parameters = sum(n for _, n in counted)
    report.bytes = sum(t.nbytes for t in network)
    dtypes: dict[str, int] = {}
    for t, n in counted:
        dtypes[t.dtype] = dtypes.get(t.dtype, 0) + n
    report.dtypes = dict(sorted(dtypes.items(), key=lambda kv: (-kv[1], kv[0])))
    optimizer = [t for t in report.entries if t.role == "optimizer"]
    report.optimizer_tensors = len(optimizer)
    report.optimizer_parameters = sum(t.numel or 0 for t in optimizer)
    report.module_prefix, report.modules = module_counts([t.name for t, _ in counted], [n for _, n in counted])
    report.largest = largest_tensors([(t.name, t.dtype, t.dims, n) for t, n in counted])  # type: ignore[misc]
