"""``PickleReport`` and what is read off a replay: globals and their problems, tensor counts and names,
storages, top-level keys, whether it is a Lightning checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

from tui.core.pickle_scan.machine import CONTAINERS, Call, DictNode, Machine, SetNode, numel

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any, Literal

MAX_TOP_KEYS = 1000
MAX_ENTRIES = 200_000
MAX_PATH_CHARS = 400
MAX_WALK_NODES = 1_000_000
MAX_GLOBAL_PROBLEMS = 20


@dataclass
class PickleReport:
    # vs WeightsSummary.source; a class constant, not a field: not annotated, since dataclasses only tells a
    # ClassVar annotation once typing is imported, which this module does not need
    source = "pickle"
    format: Literal["zip", "legacy", "tar", "not-pickle"]
    entries: list[str] = field(default_factory=list)  # tensor names (dotted key paths), pickle order
    tensors: int | None = None
    parameters: int | None = None
    dtypes: dict[str, int] | None = None
    globals: list[str] = field(default_factory=list)
    unsafe_globals: list[str] = field(default_factory=list)
    lightning: bool = False
    top_keys: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Beyond the contract: detail for the inspect pane and for diffs.
    storages: int | None = None
    storage_bytes: int | None = None
    parameters_by_key: dict[str, int] = field(default_factory=dict)
    tensors_by_key: dict[str, int] = field(default_factory=dict)
    dtypes_by_key: dict[str, dict[str, int]] = field(default_factory=dict)  # top key -> dtype -> parameters
    # Lightning: epoch, global_step and the ModelCheckpoint state (pickle_scan.lightning); None elsewhere
    lightning_state: dict[str, Any] | None = None
    tensor_table: dict[str, list] = field(default_factory=dict)  # name -> [dtype, [shape...]]
    pickle_name: str | None = None  # the archive member scanned ("archive/data.pkl")
    # "clean": every pickle torch would unpickle replayed in full, only allowlisted globals; "unsafe": a
    # global off the allowlist; "not verified": a pickle could not be replayed in full (problems say why).
    verdict: Literal["clean", "unsafe", "not verified"] = "not verified"

    def to_json(self, *, table: bool = True) -> dict[str, Any]:
        """A JSON-ready copy (``dataclasses.asdict`` deep-copies value by value: slow on big tables);
        ``table=False``: without ``tensor_table`` (one entry per tensor), which is then not built."""
        out = dict(vars(self))
        for key in ("entries", "globals", "unsafe_globals", "top_keys", "problems"):
            out[key] = list(out[key])
        for key in ("dtypes", "parameters_by_key", "tensors_by_key"):
            out[key] = dict(out[key]) if out[key] is not None else None
        out["dtypes_by_key"] = {k: dict(v) for k, v in self.dtypes_by_key.items()}
        if not table:
            del out["tensor_table"]
            return out
        out["tensor_table"] = {
            k: [d, list(s) if s is not None else None] for k, (d, s) in self.tensor_table.items()
        }
        return out

    def inspect_json(self) -> dict[str, Any]:
        """What ``inspect --json`` prints under "weights" for a pickle file: counts, names and globals."""
        return {
            "format": self.format,
            "entries": self.entries[:200],
            "tensors": self.tensors,
            "parameters": self.parameters,
            "dtypes": self.dtypes,
            "globals": self.globals,
            "unsafe_globals": self.unsafe_globals,
            "lightning": self.lightning,
            "top_keys": self.top_keys,
            "verdict": self.verdict,
            "lightning_state": self.lightning_state,
        }


def fill_report(machine: Machine, root: Any, report: PickleReport, label: str) -> None:
    """What the replay found, into ``report``: globals and their problems, tensor counts, names, keys."""
    report.globals = list(machine.globals)
    report.unsafe_globals, problems = global_problems(machine.globals, label)
    report.problems.extend(problems)

    params = 0
    dtypes: dict[str, int] = {}
    unknown = 0
    for call in machine.tensors:
        dtype, shape = call.tensor  # type: ignore[misc]
        if shape is None:
            unknown += 1
            continue
        n = numel(shape)
        params += n
        dtypes[dtype] = dtypes.get(dtype, 0) + n
    report.tensors = len(machine.tensors)
    report.parameters = params
    report.dtypes = dict(sorted(dtypes.items(), key=lambda kv: (-kv[1], kv[0])))
    if unknown:
        report.problems.append(
            f"{label}: {unknown} tensor(s) with a malformed shape are not counted in parameters"
        )
    report.storages = len(machine.storages)
    report.storage_bytes = sum(b for _, b in machine.storages.values())
    if root is not None:
        walked = machine.walked
        if walked is None or walked[0] is not root:  # a replay shared by files is walked once
            _walk(root, report, want_names=bool(machine.tensors))
            machine.walked = (root, _walk_fields(report))  # copies: the report is the caller's to change
        else:
            report.__dict__.update(_walk_fields(walked[1]))
    keys = set(report.top_keys) if root is not None and report.top_keys else machine.markers
    report.lightning = "pytorch-lightning_version" in keys or (
        "state_dict" in keys and bool(keys & {"callbacks", "optimizer_states", "loops", "lr_schedulers"})
    )


def global_problems(verdicts: dict[str, str], label: str) -> tuple[list[str], list[str]]:
    """(globals off the allowlist, one problem line each, the worst first and at most MAX_GLOBAL_PROBLEMS)
    from the machine's ``module.name -> verdict`` table."""
    unsafe: list[str] = []
    flagged: list[str] = []
    for g, verdict in verdicts.items():
        if verdict == "ok":
            continue
        unsafe.append(g)
        if verdict == "unsafe":
            flagged.append(f"{label}: unsafe pickle global {g} (would run code on load)")
        elif verdict == "called":
            flagged.append(
                f"{label}: pickle calls {g} (only rebuilding it is allowed; calling runs its constructor)"
            )
        else:
            flagged.append(
                f"{label}: pickle global {g} is not on the allowlist (loading imports it and may run its code)"
            )
    flagged.sort(key=lambda m: "unsafe pickle global" not in m)  # the worst first
    problems = flagged[:MAX_GLOBAL_PROBLEMS]
    if len(flagged) > MAX_GLOBAL_PROBLEMS:
        problems.append(
            f"{label}: and {len(flagged) - MAX_GLOBAL_PROBLEMS} more pickle globals off the allowlist"
        )
    return unsafe, problems


def _walk_fields(found: Any) -> dict[str, Any]:
    """Copies of what ``_walk`` fills (from a report, or from such a dict)."""
    get = found.get if isinstance(found, dict) else found.__dict__.get
    return {
        "top_keys": list(get("top_keys")),
        "entries": list(get("entries")),
        "tensor_table": {k: [d, list(s) if s is not None else None] for k, (d, s) in get("tensor_table").items()},
        "parameters_by_key": dict(get("parameters_by_key")),
        "tensors_by_key": dict(get("tensors_by_key")),
        "dtypes_by_key": {k: dict(v) for k, v in get("dtypes_by_key").items()},
    }


# --- naming the tensors: a walk of the rebuilt placeholders, no recursion ---------------------------------


def _key_str(key: Any) -> str:
    if isinstance(key, str):
        return key[:200]
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    return "?"


def _dict_pairs(node: Any) -> list | None:
    if isinstance(node, DictNode):
        return node.pairs
    if isinstance(node, Call) and node.pairs is not None:
        return node.pairs
    return None


def _children(node: Any, path: str) -> list[tuple[Any, str]]:
    """Container children as (child, path), in pickle order. Paths grow by dict keys and list indexes,
    not by call arguments, and stop growing past MAX_PATH_CHARS (deep nesting stays linear)."""
    grow = len(path) <= MAX_PATH_CHARS
    dot = f"{path}." if path else ""
    out: list[tuple[Any, str]] = []
    if isinstance(node, (list, tuple)):
        for i, c in enumerate(node):
            if isinstance(c, CONTAINERS):
                out.append((c, f"{dot}{i}" if grow else path))
        return out
    if isinstance(node, SetNode):
        return [(c, path) for c in node.items if isinstance(c, CONTAINERS)]
    if isinstance(node, Call):
        if isinstance(node.args, tuple):
            out.extend((a, path) for a in node.args if isinstance(a, CONTAINERS))
        if isinstance(node.state, CONTAINERS):
            out.append((node.state, path))
        if node.items:
            for i, c in enumerate(node.items):
                if isinstance(c, CONTAINERS):
                    out.append((c, f"{dot}{i}" if grow else path))
    pairs = _dict_pairs(node)
    if pairs:
        for k, v in pairs:
            if isinstance(v, CONTAINERS):
                out.append((v, f"{dot}{_key_str(k)}" if grow else path))
    return out


def _walk(root: Any, report: PickleReport, *, want_names: bool) -> None:
    """top_keys; and when ``want_names``, name the tensors reachable from ``root`` and fill
    parameters_by_key, visiting at most MAX_WALK_NODES containers. No recursion."""
    top_pairs = _dict_pairs(root)
    if top_pairs is not None:
        report.top_keys = [_key_str(k) for k, _ in top_pairs[:MAX_TOP_KEYS]]
    if not want_names:
        return
    seen: set[int] = set()
    todo: list[tuple[Any, str, str | None]]  # (node, path, top-level key)
    if top_pairs is not None:
        seen.add(id(root))
        todo = [(v, _key_str(k), _key_str(k)) for k, v in reversed(top_pairs) if isinstance(v, CONTAINERS)]
    else:
        todo = [(root, "", None)] if isinstance(root, CONTAINERS) else []
    while todo and len(seen) < MAX_WALK_NODES:
        node, path, top = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.__class__ is Call and node.tensor is not None:
            dtype, shape = node.tensor
            name = path or "<root>"
            if len(report.entries) < MAX_ENTRIES and name not in report.tensor_table:
                report.entries.append(name)
                report.tensor_table[name] = [dtype, list(shape) if shape is not None else None]
            if top is not None and shape is not None:
                n = numel(shape)
                report.parameters_by_key[top] = report.parameters_by_key.get(top, 0) + n
                report.tensors_by_key[top] = report.tensors_by_key.get(top, 0) + 1
                per = report.dtypes_by_key.setdefault(top, {})
                per[dtype] = per.get(dtype, 0) + n
            continue
        kids = _children(node, path)
        kids.reverse()
        todo.extend((c, p, top) for c, p in kids)
