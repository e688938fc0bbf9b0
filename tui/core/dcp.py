"""torch Distributed Checkpoint folders (``torch.distributed.checkpoint.save``: FSDP, torchtitan, accelerate's
FSDP sharded state): ``.metadata`` read through the static pickle machine, never unpickled, and checked
against the ``*.distcp`` files it names.

API::

    is_dcp_folder(files: set[str]) -> bool
    read_dcp(folder) -> DcpReport                      # never raises
    @dataclass DcpTensor(name, dtype, shape, chunks, role)
    @dataclass DcpReport(format, version, entries, bytes_entries, tensors, parameters, dtypes,
                         optimizer_tensors, optimizer_parameters, modules, module_prefix, largest, bytes,
                         files, chunks, globals, unsafe_globals, verdict, problems)
        .tensor_table() / .inspect_json()

Layout (torch 2.x ``FileSystemWriter``): ``.metadata`` is a pickle of ``Metadata(state_dict_metadata,
planner_data, storage_data, storage_meta, version)``. ``state_dict_metadata`` maps each flattened key
(``model.layers.0.weight``) to ``TensorStorageMetadata(properties (dtype...), size, chunks)`` (a chunk per
shard: ``offsets``, ``sizes``) or ``BytesStorageMetadata()`` (anything that is not a tensor, saved with
``torch.save``); ``storage_data`` maps ``MetadataIndex(fqn, offset)`` to ``_StorageInfo(relative_path,
offset, length, transform_descriptors)``: where each chunk's bytes are, in which ``__<rank>_<n>.distcp``.
The coordinator writes ``.metadata`` last, after every rank wrote its files.

Checked (one ``problems`` line each): no ``.metadata`` (the save never finished, or it was lost), a
``.metadata`` that does not replay or is not DCP metadata, pickle globals off the allowlist (loading it
runs them: ``promote`` refuses), a ``.distcp`` file named in the metadata that is missing or shorter than the
records in it, a chunk without a storage record, chunks that do not cover their tensor, a record shorter than
its chunk's raw bytes (when stored untransformed), ``.distcp`` files the metadata does not name.

Network and optimizer: keys under ``optim``/``optimizer`` (and their ``_state``/``_state_dict`` spellings)
are optimizer state; ``tensors``/``parameters``/``dtypes`` count the rest (what a consolidated
``model.safetensors`` holds).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from tui.core.files import open_regular_file
from tui.core.names import DCP_DATA_SUFFIX, DCP_METADATA, is_dcp_folder
from tui.core.pickle_scan.replay import Call, DictNode, GlobalRef, class_of, replay_pickle, shape_of, state_of
from tui.core.pickle_scan.torch_names import TORCH_DTYPE_NAMES
from tui.core.safetensors_header import DTYPE_BITS
from tui.core.split_weights import SplitWeights
from tui.core.text import quoted, safe_message

__all__ = ["DcpReport", "DcpTensor", "is_dcp_folder", "read_dcp"]

MAX_METADATA_BYTES = 64 << 20
MAX_PROBLEMS = 10  # names quoted per kind of problem
OPTIMIZER_ROOTS = frozenset(
    "optim optimizer optimizers optim_state optimizer_state optim_state_dict optimizer_state_dict".split()
)
_META = "torch.distributed.checkpoint.metadata."


@dataclass
class DcpTensor:
    name: str
    dtype: str  # safetensors' name ("F32"); torch's own where safetensors has none
    shape: tuple[int, ...] | None
    chunks: int
    role: Literal["network", "optimizer"] = "network"

    @property
    def numel(self) -> int | None:
        return math.prod(self.shape) if self.shape is not None else None


@dataclass
class DcpReport(SplitWeights):
    source: ClassVar[Literal["dcp"]] = "dcp"  # vs WeightsSummary.source / PickleReport.source
    format: Literal["dcp", "not-dcp"] = "dcp"
    version: str | None = None
    bytes_entries: list[str] = field(default_factory=list)  # keys saved as bytes (non-tensors)
    bytes: int = 0  # network tensor data (numel x itemsize)
    files: list[dict[str, Any]] = field(default_factory=list)  # {path, size_bytes, needed_bytes, items}
    chunks: int = 0
    globals: list[str] = field(default_factory=list)
    unsafe_globals: list[str] = field(default_factory=list)
    # .metadata is a pickle DCP's reader unpickles: judged like the others (clean only when it replays
    # into DCP metadata with every global on the allowlist)
    verdict: Literal["clean", "unsafe", "not verified"] = "not verified"

    def entry_json(self, t: DcpTensor) -> dict[str, Any]:
        return {**super().entry_json(t), "chunks": t.chunks}

    @staticmethod
    def entry_from_json(data: dict[str, Any]) -> DcpTensor:
        return DcpTensor(**{**data, "shape": tuple(data["shape"]) if data["shape"] is not None else None})

    def inspect_json(self) -> dict[str, Any]:
        out = super().inspect_json()
        out["bytes_entries"] = self.bytes_entries[:200]
        out["files"] = [dict(f) for f in self.files]
        return out


def read_dcp(folder: str | os.PathLike) -> DcpReport:
    """Describe the DCP checkpoint in ``folder`` (module docstring). Never raises."""
    folder = os.fsdecode(folder)
    try:
        report = _read(folder)
    except Exception as e:  # the contract is "never raises"; a last line of defence
        report = DcpReport(
            format="not-dcp", problems=[f"{DCP_METADATA}: read failed ({type(e).__name__}: {e})"]
        )
    report.problems = [safe_message(p) for p in report.problems]
    return report


def _read(folder: str) -> DcpReport:
    report = DcpReport()
    try:
        sizes = {e.name: e.stat().st_size for e in os.scandir(folder) if e.is_file()}
    except OSError as e:
        report.problems.append(f"{os.path.basename(folder)}: cannot list ({e.strerror or e})")
        return report
    data_files = sorted(n for n in sizes if n.endswith(DCP_DATA_SUFFIX))
    if DCP_METADATA not in sizes:
        report.problems.append(
            f"no {DCP_METADATA} beside {len(data_files)} .distcp file(s): the save did not finish (the "
            f"coordinator writes it last) or it was deleted; the checkpoint cannot be loaded"
        )
        report.files = [
            {"path": n, "size_bytes": sizes[n], "needed_bytes": None, "items": None} for n in data_files
        ]
        return report
    raw, problem = _read_metadata(os.path.join(folder, DCP_METADATA))
    if problem is not None:
        report.problems.append(problem)
        return report
    replay = replay_pickle(raw, DCP_METADATA, what="DCP metadata")
    report.globals, report.unsafe_globals = list(replay.globals), replay.unsafe_globals
    report.problems += replay.problems
    if replay.unsafe_globals:
        report.verdict = "unsafe"
    elif replay.globals and not replay.problems:
        report.verdict = "clean"
    if replay.root is None:
        return report
    if class_of(replay.root) != _META + "Metadata":
        report.format = "not-dcp"
        if report.verdict == "clean":
            report.verdict = "not verified"
        report.problems.append(
            f"{DCP_METADATA}: not DCP metadata (a pickle of {class_of(replay.root) or _plain_type(replay.root)})"
        )
        return report
    meta = state_of(replay.root)
    version = meta.get("version")
    report.version = version[:40] if isinstance(version, str) else None
    chunk_keys = _tensors(report, state_of(meta.get("state_dict_metadata")))
    records = _records(report, _pairs(meta.get("storage_data")))
    _check_storage(report, chunk_keys, records, sizes, data_files)
    _count(report)
    return report


def _plain_type(node: Any) -> str:
    return "dict" if isinstance(node, DictNode) else type(node).__name__


def _read_metadata(path: str) -> tuple[bytes, str | None]:
    try:
        fd, size = open_regular_file(path)
    except (OSError, ValueError) as e:
        return b"", f"{DCP_METADATA}: cannot open ({getattr(e, 'strerror', None) or e})"
    with os.fdopen(fd, "rb") as f:
        if size == 0:
            return b"", f"{DCP_METADATA}: zero-byte file: the save did not finish"
        if size > MAX_METADATA_BYTES:
            return (
                b"",
                f"{DCP_METADATA}: {size:,} bytes, over the {MAX_METADATA_BYTES >> 20} MiB this tool reads",
            )
        return f.read(MAX_METADATA_BYTES), None


def _pairs(node: Any) -> list[tuple[Any, Any]]:
    """A pickled dict's (key, value) pairs, any key type (storage_data is keyed by MetadataIndex)."""
    return list(node.pairs) if isinstance(node, DictNode) else []


def _dtype(properties: Any) -> str:
    """The dtype of a pickled TensorProperties: its __getstate__ tuple (dtype first) or an attribute dict."""
    dtype = None
    if isinstance(properties, Call):
        if isinstance(properties.state, tuple) and properties.state:
            dtype = properties.state[0]
        else:
            dtype = state_of(properties).get("dtype")
    if isinstance(dtype, GlobalRef) and dtype.module == "torch":
        return TORCH_DTYPE_NAMES.get(dtype.name, dtype.name[:40])
    return "?"


def _tensors(report: DcpReport, items: dict[str, Any]) -> dict[tuple[str, tuple[int, ...]], tuple[int, ...]]:
    """Fill ``entries`` / ``bytes_entries``; (fqn, chunk offsets) -> chunk sizes for every chunk."""
    chunk_keys: dict[tuple[str, tuple[int, ...]], tuple[int, ...]] = {}
    malformed: list[str] = []
    for fqn, md in items.items():
        kind = class_of(md)
        if kind == _META + "BytesStorageMetadata":
            report.bytes_entries.append(fqn)
            continue
        if kind != _META + "TensorStorageMetadata":
            malformed.append(quoted(fqn))
            continue
        fields = state_of(md)
        shape = shape_of(fields.get("size"))
        chunks = fields.get("chunks") if isinstance(fields.get("chunks"), list) else []
        tensor = DcpTensor(fqn, _dtype(fields.get("properties")), shape, len(chunks))
        if shape is None:
            malformed.append(quoted(fqn))
        report.entries.append(tensor)
        for chunk in chunks:
            parts = state_of(chunk)
            offsets, sizes = shape_of(parts.get("offsets")), shape_of(parts.get("sizes"))
            if offsets is None or sizes is None:
                malformed.append(f"{quoted(fqn)} (a chunk)")
                continue
            chunk_keys[(fqn, offsets)] = sizes
        report.chunks += len(chunks)
    if malformed:
        report.problems.append(f"{DCP_METADATA}: malformed entries: {_first(malformed)}")
    return chunk_keys


@dataclass
class _Record:
    path: str
    offset: int
    length: int
    transformed: bool


def _records(
    report: DcpReport, pairs: list[tuple[Any, Any]]
) -> dict[tuple[str, tuple[int, ...] | None], _Record]:
    out: dict[tuple[str, tuple[int, ...] | None], _Record] = {}
    bad: list[str] = []
    for key, value in pairs:
        index, info = state_of(key), state_of(value)
        fqn, path = index.get("fqn"), info.get("relative_path")
        offset, length = info.get("offset"), info.get("length")
        if not (isinstance(fqn, str) and isinstance(path, str) and _count_ok(offset) and _count_ok(length)):
            bad.append(quoted(fqn) if isinstance(fqn, str) else "?")
            continue
        chunk = shape_of(index.get("offset")) if index.get("offset") is not None else None
        out[(fqn, chunk)] = _Record(path, offset, length, bool(info.get("transform_descriptors")))
    if bad:
        report.problems.append(f"{DCP_METADATA}: malformed storage records: {_first(bad)}")
    return out


def _count_ok(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < (1 << 63)


def _check_storage(
    report: DcpReport,
    chunk_keys: dict[tuple[str, tuple[int, ...]], tuple[int, ...]],
    records: dict[tuple[str, tuple[int, ...] | None], _Record],
    sizes: dict[str, int],
    data_files: list[str],
) -> None:
    needed: dict[str, int] = {}
    items: dict[str, int] = {}
    for record in records.values():
        needed[record.path] = max(needed.get(record.path, 0), record.offset + record.length)
        items[record.path] = items.get(record.path, 0) + 1
    unsafe = [p for p in needed if "/" in p or "\\" in p or p in (".", "..") or "\x00" in p or not p]
    if unsafe:
        report.problems.append(
            f"{DCP_METADATA}: storage paths outside the folder: {_first([quoted(p) for p in unsafe])}"
        )
    missing, short = [], []
    for path in sorted(p for p in needed if p not in unsafe):
        have = sizes.get(path)
        report.files.append(
            {"path": path, "size_bytes": have, "needed_bytes": needed[path], "items": items[path]}
        )
        if have is None:
            missing.append(f"{quoted(path)} ({items[path]} items)")
        elif have < needed[path]:
            short.append(f"{quoted(path)} ({have:,} of {needed[path]:,} bytes)")
    if missing:
        report.problems.append(f"missing .distcp file(s) named in {DCP_METADATA}: {_first(missing)}")
    if short:
        report.problems.append(
            f".distcp file(s) shorter than {DCP_METADATA} says (truncated): {_first(short)}"
        )
    extra = [n for n in data_files if n not in needed]
    if extra:
        report.problems.append(
            f".distcp file(s) {DCP_METADATA} does not name (left from another save?): {_first([quoted(n) for n in extra])}"
        )
    unrecorded, small, uncovered = [], [], []
    bits = {t.name: DTYPE_BITS.get(t.dtype) for t in report.entries}
    covered: dict[str, int] = {}
    for (fqn, offsets), chunk_sizes in chunk_keys.items():
        numel = 1
        for d in chunk_sizes:
            numel *= d
        covered[fqn] = covered.get(fqn, 0) + numel
        record = records.get((fqn, offsets))
        if record is None:
            unrecorded.append(f"{quoted(fqn)} at {list(offsets)}")
        elif not record.transformed and bits.get(fqn) and record.length * 8 < numel * bits[fqn]:
            small.append(
                f"{quoted(fqn)} at {list(offsets)} ({record.length:,} of {numel * bits[fqn] // 8:,} bytes)"
            )
    for t in report.entries:
        if t.numel is not None and covered.get(t.name, 0) < t.numel:
            uncovered.append(f"{quoted(t.name)} ({covered.get(t.name, 0):,} of {t.numel:,} elements)")
    missing_bytes = [quoted(k) for k in report.bytes_entries if (k, None) not in records]
    if unrecorded or missing_bytes:
        report.problems.append(
            f"entries without a storage record in {DCP_METADATA}: {_first(unrecorded + missing_bytes)}"
        )
    if small:
        report.problems.append(f"storage records smaller than their chunk's data: {_first(small)}")
    if uncovered:
        report.problems.append(f"tensors whose chunks do not cover them: {_first(uncovered)}")


def _count(report: DcpReport) -> None:
    for t in report.entries:
        if t.name.split(".", 1)[0] in OPTIMIZER_ROOTS:
            t.role = "optimizer"
    report.count()
    report.bytes = sum((t.numel or 0) * DTYPE_BITS.get(t.dtype, 0) // 8 for t in report.network())


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_PROBLEMS])
    return shown + (f" and {len(items) - MAX_PROBLEMS} more" if len(items) > MAX_PROBLEMS else "")
