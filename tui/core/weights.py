"""Weight summaries from safetensors headers only: single files, folders and sharded indexes.

API (docs/ARCHITECTURE.md, "Core API")::

    @dataclass WeightsSummary(files, shards, tensors, parameters, dtypes, bytes, modules, largest, problems,
                              ...extras: index, file_bytes, module_prefix, metadata, index_metadata)
        .to_json() -> dict                          # JSON-serializable (shapes are lists)
    summarize_weights(folder_or_files, *, index_file=None, listing=None) -> WeightsSummary   # never raises
    tensor_table(folder) -> dict[str, tuple[str, tuple[int, ...]]]             # name -> (dtype, shape)

What gets summarized (``folder_or_files``: a file, an index, a folder, a list of paths) is decided by
``weight_files.resolve_weight_files``; its module docstring has the rules.

Integrity problems (never raised): unreadable or broken headers (``HeaderError`` text, zero-byte files),
the per-file layout problems of ``read_header`` (truncation, overlaps, size mismatches), a shard named in
the index that is missing ("missing shard named in index: ..."), tensors the index maps to a shard that
lacks them, tensors in shards that the index does not list, a tensor stored in two shards of one model
(index or ``-0000i-of-0000n`` names; separate files given together may repeat names), and the problems
``resolve_weight_files`` found (bad index, shard names leaving the folder, shards without their index).

Counts come from the shard headers (what is on disk), not from the index. ``parameters`` and ``dtypes``
(safetensors dtype name -> parameters) count logical elements (numel). ``bytes`` is the tensor data the
headers describe; ``file_bytes`` the files' sizes.

``modules``: parameters per top-level name component. A leading component shared by *every* tensor is
stripped first, repeatedly (``model.``, ``deberta.``, PEFT's ``base_model.model.``), stopping before a
numeric component (a layer index) or when a name would run out of components; what was stripped is in
``module_prefix``. So ``BertForSequenceClassification`` gives ``bert`` and ``classifier`` (no prefix:
``classifier.*`` is not under ``bert.``), a bare ``BertModel`` gives ``embeddings``, ``encoder``,
``pooler``, and a LoRA adapter over the encoder only (``base_model.model.bert.encoder.layer.<i>...``)
gives one module per layer index under the prefix ``base_model.model.bert.encoder.layer.``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from tui.core.names import SAFETENSORS_SHARD
from tui.core.safetensors_header import Entry, HeaderError, SafetensorsHeader, read_header
from tui.core.text import capped, quoted, safe_message, safe_text
from tui.core.weight_files import MAX_NAMES, WeightFilesPlan, resolve_weight_files

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "WeightsSummary",
    "largest_tensors",
    "module_counts",
    "summarize_weights",
    "tensor_table",
]

LARGEST = 10
MAX_SUMMARY_TENSORS = 1_000_000  # a whole sharded MoE model holds ~100k


@dataclass
class WeightsSummary:
    # vs PickleReport.source; a class constant, not a field: not annotated, since dataclasses only tells a
    # ClassVar annotation once typing is imported, which this module does not need
    source = "safetensors"
    files: list[dict[str, Any]] = field(default_factory=list)
    shards: int = 0
    tensors: int = 0
    parameters: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)  # safetensors dtype -> parameters
    bytes: int = 0  # tensor data bytes described by the headers
    modules: dict[str, int] = field(default_factory=dict)  # top-level module -> parameters
    largest: list[dict[str, Any]] = field(default_factory=list)  # {name, dtype, shape, parameters}
    problems: list[str] = field(default_factory=list)
    # Beyond the contract:
    index: str | None = None  # the index file used, relative to the folder
    file_bytes: int = 0
    module_prefix: str = ""  # the common leading components stripped before grouping modules
    metadata: dict[str, str] | None = None  # __metadata__ of the first shard (e.g. {"format": "pt"})
    index_metadata: dict[str, Any] | None = None  # the index's "metadata" (total_size, ...)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy (shapes are lists)."""
        out = dict(vars(self))
        out["files"] = [dict(f) for f in self.files]
        out["largest"] = [{**t, "shape": list(t["shape"])} for t in self.largest]
        for key in ("dtypes", "modules", "metadata", "index_metadata"):
            out[key] = dict(out[key]) if out[key] is not None else None
        out["problems"] = list(self.problems)
        return out

    def inspect_json(self) -> dict[str, Any]:
        """What ``inspect --json`` prints under "weights": all of it."""
        return self.to_json()


def summarize_weights(
    folder_or_files: Any, *, index_file: Any = None, listing: Iterable[str] | None = None
) -> WeightsSummary:
    """Summarize the safetensors weights at ``folder_or_files`` from their headers. Never raises.
    ``listing``: the folder's file names when the caller has just listed it (``resolve_weight_files``)."""
    try:
        out = _summarize(folder_or_files, index_file, listing)
    except Exception as e:  # the contract is "never raises"; this line is the proof of that, not a plan
        out = WeightsSummary(problems=[f"weights summary failed ({type(e).__name__}: {e})"[:300]])
    out.problems = capped([safe_message(p) for p in out.problems])
    return out


def tensor_table(folder: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype, shape) over the same files ``summarize_weights`` reads; {} when nothing is readable."""
    try:
        plan = resolve_weight_files(folder)
        out: dict[str, tuple[str, tuple[int, ...]]] = {}
        for name in plan.names:
            try:
                header = read_header(os.path.join(plan.base, name))
            except HeaderError:
                continue
            for name, dtype, shape, *_ in header.entries:
                out.setdefault(name, (dtype, tuple(shape)))
        return out
    except Exception:
        return {}


# ---------------------------------------------------------------------------------------- summarizing


def _summarize(folder_or_files: Any, index_file: Any, listing: Iterable[str] | None = None) -> WeightsSummary:
    plan = resolve_weight_files(folder_or_files, index_file, listing=listing)
    out = WeightsSummary(index=plan.index, index_metadata=plan.index_metadata)
    out.problems.extend(plan.problems)
    # Shards of one model (an index, or model-0000i-of-0000n names) must not repeat a tensor; separate
    # files given together (accelerate's model.safetensors + model_1.safetensors) may, and all count.
    sharded = plan.weight_map is not None or any(SAFETENSORS_SHARD.match(os.path.basename(n)) for n in plan.names)
    # One shard at a time: each header is reduced to these and dropped before the next is read.
    acc = _Totals()
    readable: set[str] = set()
    missing: list[str] = []
    for i, name in enumerate(plan.names):
        path = os.path.join(plan.base, name) if plan.base else name
        record: dict[str, Any] = {
            "path": name,
            "size_bytes": None,
            "header_bytes": None,
            "tensors": None,
            "parameters": None,
            "ok": False,
        }
        out.files.append(record)
        if acc.count >= MAX_SUMMARY_TENSORS:
            out.problems.append(
                f"stopped after {acc.count} tensors in {i} of {len(plan.names)} files: "
                f"over the {MAX_SUMMARY_TENSORS} tensors one summary reads"
            )
            break
        if plan.weight_map is not None and not os.path.lexists(path):
            missing.append(safe_text(name, 300))
            continue
        try:
            header = read_header(path)
        except HeaderError as e:
            out.problems.append(str(e))
            try:
                record["size_bytes"] = os.stat(path).st_size
                out.file_bytes += record["size_bytes"]
            except OSError:
                pass
            continue
        readable.add(name)
        record.update(
            size_bytes=header.file_size,
            header_bytes=header.header_len,
            tensors=len(header.entries),
            parameters=header.parameters,
            ok=not header.problems,
        )
        out.file_bytes += header.file_size
        out.problems.extend(header.problems)
        if out.metadata is None and header.metadata is not None:
            out.metadata = header.metadata
        acc.add(name, header, sharded)
    out.shards = len(plan.names)
    if len(missing) <= MAX_NAMES:  # one line each while few; 5,000 missing shards are one line
        out.problems += [f"missing shard named in index: {name}" for name in missing]
    else:
        out.problems.append(f"{len(missing)} missing shards named in index: {_names(missing)}")
    if not plan.names and not out.problems:
        out.problems.append("no .safetensors weights found")
    if acc.dupes:
        out.problems.append(f"tensor(s) stored in two shards: {_names(acc.dupes, acc.dupe_count)}")
    if plan.weight_map is not None:
        out.problems.extend(_index_problems(plan, readable, acc.where))

    out.parameters, out.bytes, out.tensors = acc.parameters, acc.bytes, len(acc.names)
    out.dtypes = dict(sorted(acc.dtypes.items(), key=lambda kv: (-kv[1], kv[0])))
    if acc.whole is not None:  # one file counted whole: its modules are a function of its header
        derived = acc.whole.derived
        if "modules" not in derived:
            derived["modules"] = module_counts(acc.names, acc.numels)
        prefix, modules = derived["modules"]
        out.module_prefix, out.modules = prefix, dict(modules)
    else:
        out.module_prefix, out.modules = module_counts(acc.names, acc.numels)
    out.largest = [
        {"name": n, "dtype": d, "shape": list(shape), "parameters": numel}
        for _, n, d, shape, numel in sorted(acc.largest)
    ]
    return out


@dataclass(repr=False, eq=False)  # private: never printed nor compared, two methods fewer to compile
class _Totals:
    """What the summary keeps of every shard read: counts, names (for modules and index checks), the
    largest tensors; never the headers themselves."""

    count: int = 0  # tensors seen, repeats included
    parameters: int = 0
    bytes: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # tensor -> first shard holding it (shards only)
    names: list[str] = field(default_factory=list)  # counted tensors, in order
    numels: list[int] = field(default_factory=list)
    largest: list[tuple[tuple[int, str], str, str, list, int]] = field(default_factory=list)
    dupes: list[str] = field(default_factory=list)  # the first few, quoted
    dupe_count: int = 0
    files: int = 0
    whole: SafetensorsHeader | None = None  # the header counted, when it is the only one and counted whole

    def add(self, file: str, header: SafetensorsHeader, sharded: bool) -> None:
        """Count the entries of ``file``. Only shards of one model (an index included) need ``where``:
        separate files may repeat names, and all of them count."""
        entries = header.entries
        self.count += len(entries)
        self.files += 1
        part = _derived_digest(header)
        if sharded:
            names = part[0]  # unique within one header (JSON object keys)
            if self.where.keys().isdisjoint(names):  # the usual case, in two C-level passes
                self.where.update(dict.fromkeys(names, file))
            else:
                part = _digest(self._first_seen(file, entries))
        self.whole = header if self.files == 1 and part is header.derived.get("digest") else None
        names, numels, parameters, nbytes, dtypes, top = part
        self.names.extend(names)
        self.numels.extend(numels)
        self.parameters += parameters
        self.bytes += nbytes
        for dtype, n in dtypes.items():
            self.dtypes[dtype] = self.dtypes.get(dtype, 0) + n
        self.largest = sorted(self.largest + top)[:LARGEST]  # = heapq.nsmallest, in C: a few dozen items

    def _first_seen(self, file: str, entries: list[Entry]) -> list[Entry]:
        """Record where each name was first seen; a repeat is a problem and is not counted again."""
        where = self.where
        kept: list[Entry] = []
        for e in entries:
            first = where.get(e[0])
            if first is None:
                where[e[0]] = file
            else:
                self.dupe_count += 1
                if len(self.dupes) < MAX_NAMES:
                    self.dupes.append(f"{quoted(e[0])} ({first} and {file})")
                continue
            kept.append(e)
        return kept


def _size_order(e: Entry) -> tuple[int, str]:
    return -e[5], e[0]


# What a summary counts of a list of entries: names, numels, parameters, bytes, dtypes, the LARGEST biggest.
_Digest = tuple[list[str], list[int], int, int, dict[str, int], list[tuple[tuple[int, str], str, str, list, int]]]


def _digest(entries: list[Entry]) -> _Digest:
    numels = [e[5] for e in entries]
    kinds = {e[1] for e in entries}
    if len(kinds) == 1:  # one dtype (most files): no per-tensor sums
        dtypes = {kinds.pop(): sum(numels)}
    else:
        dtypes = {}
        for e in entries:
            dtypes[e[1]] = dtypes.get(e[1], 0) + e[5]
    # Only tensors at least as large as the LARGEST-th largest can be among the largest: the key function
    # then runs on a handful of entries, not on all of them.
    pool = entries
    if len(entries) > LARGEST:
        cut = sorted(numels)[-LARGEST]
        pool = [e for e in entries if e[5] >= cut]
    top = [((-e[5], e[0]), e[0], e[1], e[2], e[5]) for e in sorted(pool, key=_size_order)[:LARGEST]]
    return [e[0] for e in entries], numels, sum(numels), sum([e[4] - e[3] for e in entries]), dtypes, top


def _derived_digest(header: SafetensorsHeader) -> _Digest:
    """The digest of a whole header, computed once per distinct header bytes (``derived`` is shared)."""
    found = header.derived.get("digest")
    if found is None:
        found = header.derived["digest"] = _digest(header.entries)
    return found


def _index_problems(plan: WeightFilesPlan, readable: set[str], where: dict[str, str]) -> list[str]:
    assert plan.weight_map is not None
    if where == plan.weight_map:  # every tensor in the shard the index names, and no other: nothing to say
        return []
    out = []
    absent: list[str] = []  # listed in the index, its shard was read, the tensor is not in it
    moved: list[str] = []  # listed under one shard, found in another
    for tensor, shard in plan.weight_map.items():
        if shard not in readable:
            continue  # missing / unreadable / unsafe shard: already a problem of its own
        found = where.get(tensor)
        if found is None:
            absent.append(f"{quoted(tensor)} ({quoted(shard)})")
        elif found != shard:
            moved.append(f"{quoted(tensor)} (index: {quoted(shard)}, found in {found})")
    if absent:
        out.append(
            f"{len(absent)} tensor(s) listed in {plan.index} but absent from their shard: {_names(absent)}"
        )
    if moved:
        out.append(f"{len(moved)} tensor(s) in a different shard than {plan.index} says: {_names(moved)}")
    extra = [t for t in where if t not in plan.weight_map]
    if extra:
        out.append(
            f"{len(extra)} tensor(s) in the shards but not listed in {plan.index}: {_names([quoted(t) for t in extra])}"
        )
    return out


def _names(items: list[str], total: int | None = None) -> str:
    """The first few of ``items`` and how many more (``total`` when only the first few were kept)."""
    total = len(items) if total is None else total
    shown = ", ".join(items[:MAX_NAMES])
    return shown + (f" and {total - MAX_NAMES} more" if total > MAX_NAMES else "")


def largest_tensors(tensors: list[tuple[str, str, tuple[int, ...], int]]) -> list[dict[str, Any]]:
    """The ``LARGEST`` biggest of (name, dtype, shape, numel), as ``{name, dtype, shape, parameters}``: the
    Weights tab's table for the formats read without safetensors headers."""
    import heapq  # here: the safetensors summaries never need it

    top = heapq.nsmallest(LARGEST, tensors, key=lambda t: (-t[3], t[0]))
    return [{"name": n, "dtype": d, "shape": list(s), "parameters": c} for n, d, s, c in top]


def module_counts(names: list[str], numels: list[int]) -> tuple[str, dict[str, int]]:
    """(stripped prefix, parameters per module) of tensors ``names`` with ``numels``; the module docstring
    has the rules. Every format's Weights tab groups by it."""
    if not names:
        return "", {}
    # The components every name shares are those of the common string prefix that a dot follows; the
    # common prefix of all names is that of the smallest and the largest.
    lo, hi = min(names), max(names)
    common = os.path.commonprefix([lo, hi])
    shared = common[: common.rfind(".") + 1].split(".")[:-1]
    depth = 0
    for part in shared:
        if part.isdigit():
            break
        depth += 1
    prefix = ".".join(shared[:depth]) + "." if depth else ""
    modules: dict[str, int] = {}
    cut = len(prefix)
    for name, numel in zip(names, numels, strict=True):
        dot = name.find(".", cut)
        key = name[cut:dot] if dot >= 0 else name[cut:]
        modules[key] = modules.get(key, 0) + numel
    return prefix, dict(sorted(modules.items(), key=lambda kv: (-kv[1], kv[0])))
