"""``SplitWeights``, what the MindSpore and DCP reports share; kept apart from tui.core.weights (which
re-exports it) so that the safetensors summaries do not create this dataclass at every start."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tui.core.weights import largest_tensors, module_counts

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["SplitWeights"]


@dataclass
class SplitWeights:
    """What the MindSpore and DCP reports share: their tensor records (``entries``: ``name``, ``dtype``,
    ``shape``, ``numel``, ``role`` "network" | "optimizer") and the counts the Weights tab shows, of the network
    (what a ``model.safetensors`` export holds) and of the optimizer state kept beside it."""

    entries: list[Any] = field(default_factory=list)
    tensors: int | None = None  # network tensors; None when nothing could be read
    parameters: int | None = None
    dtypes: dict[str, int] | None = None  # network dtype -> parameters, largest first
    optimizer_tensors: int = 0
    optimizer_parameters: int = 0
    module_prefix: str = ""
    modules: dict[str, int] = field(default_factory=dict)
    largest: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def network(self) -> list[Any]:
        return [t for t in self.entries if t.role == "network"]

    def tensor_table(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """name -> (dtype, shape) of the network tensors (what a diff compares)."""
        return {t.name: (t.dtype, t.shape) for t in self.network() if t.shape is not None}

    def count(self) -> None:
        """Fill the counts from ``entries`` (roles set): every tensor counts, parameters only where the shape
        is known (an unusable shape is a problem of its own)."""
        network = [(t.name, t.dtype, t.shape, t.numel) for t in self.network() if t.shape is not None]
        dtypes: dict[str, int] = {}
        for _, dtype, _, n in network:
            dtypes[dtype] = dtypes.get(dtype, 0) + n
        self.tensors = len(self.network())
        self.parameters = sum(n for *_, n in network)
        self.dtypes = dict(sorted(dtypes.items(), key=lambda kv: (-kv[1], kv[0])))
        self.module_prefix, self.modules = module_counts([t[0] for t in network], [t[3] for t in network])
        self.largest = largest_tensors(network)
        optimizer = [t for t in self.entries if t.role == "optimizer"]
        self.optimizer_tensors = len(optimizer)
        self.optimizer_parameters = sum(t.numel or 0 for t in optimizer)

    def inspect_json(self) -> dict[str, Any]:
        """What ``inspect --json`` prints under "weights": every field, the first 200 entries."""
        out = {k: v for k, v in vars(self).items() if k != "entries"}
        out["entries"] = [self.entry_json(t) for t in self.entries[:200]]
        out["largest"] = [dict(t) for t in self.largest]
        return out

    def entry_json(self, t: Any) -> dict[str, Any]:
        shape = list(t.shape) if t.shape is not None else None
        return {"name": t.name, "dtype": t.dtype, "shape": shape, "role": t.role}

    def to_json(self) -> dict[str, Any]:
        """All of it, entries included, as JSON types (the summary cache stores this)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Any:
        """The report ``to_json`` gave (``entry_from_json`` rebuilds one tensor record)."""
        fields = dict(data)
        entries = [cls.entry_from_json(e) for e in fields.pop("entries")]
        return cls(entries=entries, **fields)

    @staticmethod
    def entry_from_json(data: dict[str, Any]) -> Any:
        raise NotImplementedError
