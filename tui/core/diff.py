"""Two checkpoints compared from their files: every config key that differs, and every tensor whose
name, dtype or shape differs. The app's diff screen and ``ckpt-tui diff`` show these same records;
``tui.core.weight_compare`` adds the values (max abs difference per tensor).

API::

    NOISE_KEYS                                     # config keys skipped unless asked (tool versions, paths)
    @dataclass ConfigChange(key, a, b, only_in)    # one dotted key; only_in "a" / "b" / None
    @dataclass TensorChange(name, a, b)            # a / b: (dtype, shape) or None where absent
    config_changes(a, b, *, include_noise=False) -> list[ConfigChange]
    tensor_table_of(path) -> dict[name, (dtype, shape)]   # MindSpore / DCP / safetensors headers / a weight pickle
    tensor_changes(a, b) -> list[TensorChange]
    @dataclass CheckpointDiff(a, b, config, tensors, problems); diff_checkpoints(a, b, ...) -> CheckpointDiff

Standard library only. Nothing here raises on bad input: unreadable files become ``problems``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tui.core import weights
from tui.core.dcp import is_dcp_folder, read_dcp
from tui.core.files import read_head
from tui.core.mindspore_ckpt import read_mindspore, sniff
from tui.core.names import CONFIG_FILE, PICKLE_SUFFIXES, PICKLE_WEIGHTS
from tui.core.pickle_scan import scan_pickle
from tui.core.summaries import config_file

# Keys that differ between two saves of the same model without meaning anything for it: the library
# version that wrote the file and where the model was loaded from. Shown with ``include_noise``.
NOISE_KEYS = frozenset({"transformers_version", "_name_or_path", "_commit_hash", "_attn_implementation_autoset"})
MAX_KEYS = 100_000  # leaf keys flattened per config; a hostile config stops here (said in problems)

Shape = tuple[int, ...]
TensorTable = dict[str, tuple[str, Shape]]


@dataclass(frozen=True)
class ConfigChange:
    """One dotted config key whose values differ. ``only_in`` says which side has it when the other
    lacks it (that side's value is then None, which is also a JSON value: hence the flag)."""

    key: str
    a: Any
    b: Any
    only_in: Literal["a", "b"] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "a": self.a, "b": self.b, "only_in": self.only_in}


@dataclass(frozen=True)
class TensorChange:
    """A tensor missing on one side (None there) or stored with another dtype or shape."""

    name: str
    a: tuple[str, Shape] | None
    b: tuple[str, Shape] | None

    def to_json(self) -> dict[str, Any]:
        def side(entry: tuple[str, Shape] | None) -> dict[str, Any] | None:
            return {"dtype": entry[0], "shape": list(entry[1])} if entry is not None else None

        return {"name": self.name, "a": side(self.a), "b": side(self.b)}


@dataclass
class CheckpointDiff:
    a: str
    b: str
    config: list[ConfigChange] = field(default_factory=list)
    tensors: list[TensorChange] = field(default_factory=list)
    tensors_compared: int = 0  # names present on both sides
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "config": [c.to_json() for c in self.config],
            "tensors": [t.to_json() for t in self.tensors],
            "tensors_compared": self.tensors_compared,
            "problems": list(self.problems),
        }


# --- config -----------------------------------------------------------------------------------------------


def flatten(obj: Any, *, limit: int = MAX_KEYS) -> tuple[dict[str, Any], bool]:
    """Nested objects as dotted keys (``text_config.hidden_size``); lists and scalars are leaves, an
    empty object is a leaf ``{}``. Returns (keys, complete): False when ``limit`` keys were reached."""
    out: dict[str, Any] = {}
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        prefix, value = stack.pop()
        if isinstance(value, dict) and value:
            # reversed so that keys come out in file order (a stack pops the last pushed first)
            stack.extend((f"{prefix}{key}.", v) for key, v in reversed(value.items()))
            continue
        if len(out) >= limit:
            return out, False
        out[prefix[:-1] if prefix else ""] = value
    return out, True


def config_changes(
    a: dict[str, Any] | None, b: dict[str, Any] | None, *, include_noise: bool = False
) -> list[ConfigChange]:
    """Every dotted key whose values differ (``1`` and ``1.0`` are equal, ``True`` and ``1`` are not),
    sorted by key. ``NOISE_KEYS`` (at any depth) are skipped unless ``include_noise``."""
    flat_a, _ = flatten(a or {})
    flat_b, _ = flatten(b or {})
    out = []
    for key in sorted(set(flat_a) | set(flat_b)):
        if not include_noise and key.rsplit(".", 1)[-1] in NOISE_KEYS:
            continue
        if key not in flat_b:
            out.append(ConfigChange(key, flat_a[key], None, "a"))
        elif key not in flat_a:
            out.append(ConfigChange(key, None, flat_b[key], "b"))
        elif not _same(flat_a[key], flat_b[key]):
            out.append(ConfigChange(key, flat_a[key], flat_b[key]))
    return out


def _same(x: Any, y: Any) -> bool:
    return type(x) is type(y) and x == y or (
        isinstance(x, int | float) and isinstance(y, int | float)
        and not isinstance(x, bool) and not isinstance(y, bool) and x == y
    )  # fmt: skip


# --- tensors ----------------------------------------------------------------------------------------------


def tensor_table_of(path: str | os.PathLike) -> TensorTable:
    """name -> (dtype, shape) of a checkpoint's weights: the network tensors of a MindSpore file or a DCP
    folder, the safetensors headers (a file, a folder, a sharded index), else the static scan of its one
    weight pickle (``pytorch_model.bin``, a loose ``.pt``/``.bin``/``.ckpt``). {} when none is readable."""
    if os.path.isfile(path) and sniff(read_head(path)) == "mindspore":
        return read_mindspore(path).tensor_table()
    if os.path.isdir(path) and is_dcp_folder(_names(path)):
        return read_dcp(path).tensor_table()
    table = weights.tensor_table(path)
    if table:
        return table
    pickle_file = _weight_pickle(Path(path))
    if pickle_file is None:
        return {}
    report = scan_pickle(pickle_file)
    out: TensorTable = {}
    for name, (dtype, shape) in report.tensor_table.items():
        if isinstance(dtype, str) and isinstance(shape, list | tuple):
            out[name] = (dtype, tuple(int(n) for n in shape))
    return out


def _names(folder: str | os.PathLike) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


def _weight_pickle(path: Path) -> Path | None:
    if path.is_file():
        return path if path.name.endswith(PICKLE_SUFFIXES) else None
    found = [path / n for n in PICKLE_WEIGHTS if (path / n).is_file()]
    return found[0] if len(found) == 1 else None


def tensor_changes(a: TensorTable, b: TensorTable) -> list[TensorChange]:
    """Tensors missing on one side or differing in dtype or shape, sorted by name."""
    out = []
    for name in sorted(set(a) | set(b)):
        ea, eb = a.get(name), b.get(name)
        if ea is None or eb is None or ea[0] != eb[0] or tuple(ea[1]) != tuple(eb[1]):
            out.append(TensorChange(name, ea, eb))
    return out


def diff_checkpoints(
    a: str | os.PathLike, b: str | os.PathLike, *, include_noise: bool = False, names: tuple[str, str] | None = None
) -> CheckpointDiff:
    """Config and tensor-table differences of two checkpoints (folders or files). ``names`` are how the
    result names them (default: the paths as given)."""
    label_a, label_b = names or (os.fspath(a), os.fspath(b))
    out = CheckpointDiff(label_a, label_b)
    configs = []
    for side, path in (("A", a), ("B", b)):
        config, problems = config_file(path)
        out.problems += [f"{side}: {p}" for p in problems]
        if config is None and not problems and Path(path).is_dir():
            out.problems.append(f"{side}: no {CONFIG_FILE}")
        if config is not None and not flatten(config)[1]:
            out.problems.append(f"{side}: config has more than {MAX_KEYS} keys; compared the first ones")
        configs.append(config)
    if any(c is not None for c in configs):
        out.config = config_changes(configs[0], configs[1], include_noise=include_noise)
    table_a, table_b = tensor_table_of(a), tensor_table_of(b)
    for side, table in (("A", table_a), ("B", table_b)):
        if not table:
            out.problems.append(f"{side}: no readable tensor table (safetensors header or weight pickle)")
    out.tensors = tensor_changes(table_a, table_b)
    out.tensors_compared = len(set(table_a) & set(table_b))
    return out
