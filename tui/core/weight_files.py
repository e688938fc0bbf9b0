"""Which files make up a model's safetensors weights, decided before any of them is read (at most the
shard index is). ``weights.summarize_weights`` and ``weight_compare`` read what it decides.

What ``folder_or_files`` may be:

* a ``.safetensors`` file; a ``*.safetensors.index.json`` file; a list of such paths;
* a folder: its shard index if it has one (``model.safetensors.index.json`` first, else the first
  ``*.safetensors.index.json`` by name, e.g. ``adapter_model.safetensors.index.json``), else
  ``model.safetensors``, else ``adapter_model.safetensors``, else every ``*.safetensors`` in it;
* ``index_file=`` names the index explicitly; shards are looked up beside it.

Problems found here (never raised) go into ``WeightFilesPlan.problems``: an index that is missing, too
large, not JSON or without a ``weight_map``; shard names that try to leave the folder; several indexes
given; ``model-0000i-of-0000n`` shards without their index (or with some of the n missing).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from tui.core.files import loads_json_of_strings, open_regular_file, read_bounded
from tui.core.names import SAFETENSORS_INDEX, SAFETENSORS_SHARD
from tui.core.text import first_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MAX_INDEX_BYTES", "MAX_NAMES", "WeightFilesPlan", "resolve_weight_files"]

MAX_INDEX_BYTES = 64 << 20
MAX_NAMES = 5  # names quoted in one problem line


@dataclass
class WeightFilesPlan:
    """Which files to read, decided before reading any of them."""

    base: str  # folder that names are relative to
    names: list[str]  # shard / file names relative to base (or absolute when given so)
    index: str | None = None
    weight_map: dict[str, str] | None = None
    index_metadata: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)



def resolve_weight_files(
    folder_or_files: Any, index_file: Any = None, *, listing: Iterable[str] | None = None
) -> WeightFilesPlan:
    """Decide which files make up the weights (see the module docstring). Reads at most the index.

    ``listing``: the names of the regular files in the folder ``folder_or_files``, when the caller has
    just listed it (the scan's walk): the folder is then neither checked nor listed again."""
    if index_file is not None:
        return _plan_from_index(os.fspath(index_file))
    if listing is not None:
        return _plan_from_folder(os.fsdecode(folder_or_files), sorted(listing))
    if isinstance(folder_or_files, (str, bytes, os.PathLike)):
        path = os.fsdecode(folder_or_files)
        if os.path.isdir(path):
            return _plan_from_folder(path)
        if path.endswith(".index.json"):
            return _plan_from_index(path)
        if not os.path.lexists(path):
            return WeightFilesPlan(base="", names=[], problems=[f"{path}: does not exist"])
        return WeightFilesPlan(base=os.path.dirname(path), names=[os.path.basename(path)])
    if isinstance(folder_or_files, Iterable):
        paths = [os.fsdecode(p) for p in folder_or_files]
        indexes = [p for p in paths if p.endswith(".index.json")]
        if indexes:
            plan = _plan_from_index(indexes[0])
            if len(indexes) > 1:
                plan.problems.append(f"several index files given; used {os.path.basename(indexes[0])}")
            return plan
        common = os.path.commonpath(paths) if paths and all(os.path.isabs(p) for p in paths) else ""
        if common and all(os.path.dirname(p) == common for p in paths):
            return WeightFilesPlan(base=common, names=[os.path.basename(p) for p in paths])
        return WeightFilesPlan(base="", names=paths)
    return WeightFilesPlan(
        base="", names=[], problems=[f"cannot summarize weights of {type(folder_or_files).__name__}"]
    )


def _file_names(folder: str) -> list[str]:
    """Sorted names of the regular files (or links to them) in ``folder``; an entry that cannot be
    stat'ed (a looping or dangling link) is passed over, not allowed to fail the listing."""
    names = []
    with os.scandir(folder) as it:
        for entry in it:
            try:
                if entry.is_file():
                    names.append(entry.name)
            except OSError:
                continue
    return sorted(names)


def _plan_from_folder(folder: str, names: list[str] | None = None) -> WeightFilesPlan:
    if names is None:
        try:
            names = _file_names(folder)
        except OSError as e:
            return WeightFilesPlan(
                base=folder, names=[], problems=[f"{os.path.basename(folder)}: cannot list ({e.strerror})"]
            )
    indexes = [n for n in names if n.endswith(".safetensors.index.json")]
    if indexes:
        chosen = SAFETENSORS_INDEX if SAFETENSORS_INDEX in indexes else indexes[0]
        return _plan_from_index(os.path.join(folder, chosen))
    files = [n for n in names if n.endswith(".safetensors")]
    for preferred in ("model.safetensors", "adapter_model.safetensors"):
        if preferred in files:
            return WeightFilesPlan(base=folder, names=[preferred])
    plan = WeightFilesPlan(base=folder, names=files)
    plan.problems.extend(_orphan_shard_problems(files))
    return plan


def _orphan_shard_problems(files: list[str]) -> list[str]:
    """``model-0000i-of-0000n.safetensors`` without an index: say so, and name missing shard numbers."""
    groups: dict[tuple[str, int], set[int]] = {}
    for name in files:
        m = SAFETENSORS_SHARD.match(name)
        if m:
            groups.setdefault((m["stem"], int(m["n"])), set()).add(int(m["i"]))
    out = []
    for (stem, n), have in sorted(groups.items()):
        line = f"{stem}-*-of-{n:05d}.safetensors shards have no {stem}.safetensors.index.json"
        missing = sorted(set(range(1, n + 1)) - have) if n <= 100_000 else []
        if missing:
            line += f"; shard(s) {', '.join(str(i) for i in missing[:10])} of {n} missing"
        out.append(line)
    return out


def _plan_from_index(index_path: str) -> WeightFilesPlan:
    base, name = os.path.split(index_path)
    plan = WeightFilesPlan(base=base, names=[], index=name)
    data, problem = _load_index(index_path)
    if problem:
        plan.problems.append(problem)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if isinstance(data, dict) and isinstance(data.get("metadata"), dict):
        plan.index_metadata = _jsonable(data["metadata"])
    # JSON strings are exactly str: one C-level pass over the types instead of an isinstance per tensor
    if data is not None and not (isinstance(weight_map, dict) and {str}.issuperset(map(type, weight_map.values()))):
        plan.problems.append(f"{name}: no valid weight_map (tensor name -> shard file)")
        weight_map = None
    if weight_map is None:
        # Fall back to the shards on disk so the user still sees something.
        stem = name[: -len(".index.json")] if name.endswith(".index.json") else name
        stem = stem[: -len(".safetensors")] if stem.endswith(".safetensors") else stem
        try:
            on_disk = sorted(
                e.name
                for e in os.scandir(base or ".")
                if e.name.endswith(".safetensors")
                and (e.name.startswith(stem + "-") or e.name == stem + ".safetensors")
            )
        except OSError:
            on_disk = []
        plan.names = on_disk
        return plan
    plan.weight_map = weight_map
    shards: list[str] = []
    unsafe: list[str] = []
    for shard in dict.fromkeys(weight_map.values()):  # each shard once, in order of first mention
        if _unsafe_shard_name(shard):
            unsafe.append(shard)
        else:
            shards.append(shard)
    if unsafe:
        plan.problems.append(
            f"{name}: shard names outside the folder ignored: "
            + ", ".join(repr(s)[:80] for s in unsafe[:MAX_NAMES])
        )
    plan.names = sorted(shards)
    return plan


def _unsafe_shard_name(shard: str) -> bool:
    return (
        not shard
        or "/" in shard
        or "\\" in shard
        or shard in (".", "..")
        or os.path.isabs(shard)
        or "\x00" in shard
    )


def _load_index(path: str) -> tuple[Any, str | None]:
    name = os.path.basename(path)
    try:
        fd, size = open_regular_file(path)
    except FileNotFoundError:
        return None, f"{name}: index file missing"
    except (OSError, ValueError) as e:
        return None, f"{name}: cannot open index ({getattr(e, 'strerror', None) or e})"
    try:
        if size > MAX_INDEX_BYTES:
            return None, f"{name}: index is {size} bytes, over the {MAX_INDEX_BYTES >> 20} MiB limit"
        raw = read_bounded(fd, size, MAX_INDEX_BYTES)
    except OSError as e:
        return None, f"{name}: cannot read index ({e.strerror or e})"
    finally:
        os.close(fd)
    if not raw:
        return None, f"{name}: zero-byte index file"
    try:
        text = raw.decode("utf-8")  # an index is UTF-8 (json.loads of bytes would also take UTF-16)
        return (json.loads(text) if text.startswith("\ufeff") else loads_json_of_strings(raw)), None
    except (ValueError, RecursionError) as e:
        return (
            None,
            f"{name}: index is not valid JSON ({first_line(e, 120)})",
        )


def _jsonable(obj: Any) -> Any:
    try:
        json.dumps(obj)
        return obj
    except (TypeError, ValueError, RecursionError):
        return None
