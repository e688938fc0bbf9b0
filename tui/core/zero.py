"""Where the weights of a DeepSpeed ZeRO checkpoint are, and in which dtype, from static pickle scans.

DeepSpeed writes, per tag folder (``global_stepN/``, or ``pytorch_model/`` inside an accelerate
``save_state`` folder):

* ZeRO-1/2: one ``mp_rank_00_model_states.pt`` whose ``module`` holds every parameter in the dtype the
  model trains in (F32 for an fp32 run, BF16/F16 under mixed precision), plus one
  ``*zero_pp_rank_<r>_mp_rank_00_optim_states.pt`` per rank: that rank's partition of the fp32 master
  weights and the Adam moments.
* ZeRO-3: one ``zero_pp_rank_<r>_mp_rank_00_model_states.pt`` per rank whose ``module`` holds empty
  placeholders; the weights exist only as fp32 partitions in the optimizer shards.

So the optimizer shards are the only full-precision copy of the weights under ZeRO-3 and under mixed
precision, and a duplicate (plus optimizer moments) for an fp32 ZeRO-1/2 run. ``weight_copies`` lists
the copies outside the optimizer shards (consolidated safetensors / ``pytorch_model*.bin`` and the model
states' ``module``) with their dtypes; slim drops the shards only when one of them is full precision.

Standard library only; pickle files are scanned statically through the ``scan`` function the caller
passes (``tui.core.integrity.scan_pickle_into``'s cache), never loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tui.core import weights
from tui.core.files import walk
from tui.core.names import MP_MODEL_STATES, PICKLE_WEIGHT_SHARD, PICKLE_WEIGHTS
from tui.core.text import format_count

if TYPE_CHECKING:
    from tui.core.pickle_scan import PickleReport

FULL_PRECISION = frozenset({"F32", "F64"})
# Float dtypes: a copy of the weights is full precision when every float parameter is in FULL_PRECISION
# (integer buffers such as position ids say nothing about precision).
_FLOATS = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ"})
MODULE_KEY = "module"  # the model states' state dict

Scan = Callable[[Path], "PickleReport | None"]


@dataclass(frozen=True)
class WeightCopy:
    """One copy of the model's weights in a checkpoint folder, outside the ZeRO optimizer shards."""

    label: str  # posix path relative to the folder, e.g. "pytorch_model/mp_rank_00_model_states.pt"
    tensors: int | None
    parameters: int | None  # None: unknown; 0: ZeRO-3 placeholders
    dtypes: dict[str, int] | None

    @property
    def full_precision(self) -> bool:
        floats = {d for d, n in (self.dtypes or {}).items() if d in _FLOATS and n}
        return bool(self.parameters) and bool(floats) and floats <= FULL_PRECISION

    def describe(self) -> str:
        if self.parameters is None:
            return f"{self.label} (unreadable)"
        if self.parameters == 0:
            return f"{self.label} (ZeRO-3 placeholders, no weights)"
        dtypes = "/".join(sorted(d for d, n in (self.dtypes or {}).items() if n)) or "?"
        return f"{self.label} ({format_count(self.parameters)} parameters, {dtypes})"


def model_states_files(files: Iterable[str]) -> list[str]:
    """The DeepSpeed model-states files among ``files`` (posix paths relative to a checkpoint folder)."""
    return sorted(f for f in files if MP_MODEL_STATES.match(f.rsplit("/", 1)[-1]))


def model_states_copy(folder: Path, files: Iterable[str], scan: Scan) -> WeightCopy | None:
    """The weights held by the model-states files among ``files``: the ``module`` state dicts, summed over
    model-parallel ranks; ``parameters`` 0 for ZeRO-3 placeholders. None when there is no such file."""
    names = model_states_files(files)
    if not names:
        return None
    tensors = parameters = 0
    dtypes: dict[str, int] = {}
    for name in names:
        report = scan(folder / name)
        module = report.parameters_by_key.get(MODULE_KEY) if report is not None else None
        if report is None or module is None or report.parameters is None:
            return WeightCopy(_label(names), None, None, None)
        parameters += module
        tensors += report.tensors or 0
        file_dtypes = {d: n for d, n in (report.dtypes or {}).items() if n}
        if module == report.parameters:
            for dtype, n in file_dtypes.items():  # every tensor of the file is the module's
                dtypes[dtype] = dtypes.get(dtype, 0) + n
        elif len(file_dtypes) == 1:  # one dtype in the whole file (frozen fragments beside the module)
            (dtype,) = file_dtypes
            dtypes[dtype] = dtypes.get(dtype, 0) + module
        elif module:
            return WeightCopy(_label(names), None, module, None)  # dtypes of the module alone unknown
    return WeightCopy(_label(names), tensors, parameters, {d: n for d, n in dtypes.items() if n} or {})


def _label(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} more)"


def weight_copies(folder: Path, files: Iterable[str], scan: Scan) -> list[WeightCopy]:
    """Every copy of the weights in ``folder`` outside the optimizer shards: consolidated safetensors at
    the top, a top-level weight pickle, and the model states' module."""
    files = list(files)
    top = [f for f in files if "/" not in f]
    out: list[WeightCopy] = []
    if any(f.endswith(".safetensors") for f in top):
        summary = weights.summarize_weights(folder)
        names = [str(f.get("path")) for f in summary.files]
        label = names[0] if len(names) == 1 else f"{len(names)} safetensors files"
        out.append(WeightCopy(label, summary.tensors, summary.parameters or None, dict(summary.dtypes)))
    for name in sorted(f for f in top if f in PICKLE_WEIGHTS or PICKLE_WEIGHT_SHARD.match(f)):
        report = scan(folder / name)
        if report is not None:
            out.append(WeightCopy(name, report.tensors, report.parameters, report.dtypes))
    states = model_states_copy(folder, files, scan)
    if states is not None:
        out.append(states)
    return out


def files_under(folder: Path) -> list[str]:
    """Posix paths of the files under ``folder`` (links not followed), for ``weight_copies``."""
    out = []
    for dirpath, dirnames, filenames in walk(folder):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        rel = os.path.relpath(dirpath, folder)
        out += [n if rel == "." else f"{Path(rel).as_posix()}/{n}" for n in filenames]
    return out
