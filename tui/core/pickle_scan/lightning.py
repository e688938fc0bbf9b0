"""What a Lightning ``.ckpt`` says about itself, read off the replayed pickle (never unpickled):
``epoch``, ``global_step`` and the ModelCheckpoint callback's state (``monitor``, ``best_model_path``,
``best_model_score``, ``current_score``, ``best_k_models``).

Scores are 0-dim tensors: their value is in the archive's storage record, which the caller reads for us
(``read_scalar(key, offset, dtype)``: a few bytes of one ``data/<key>`` record, never a whole storage).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

from tui.core.pickle_scan.machine import Call, DictNode, Persistent, is_count

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

MAX_BEST_K = 100
_SCALAR_FORMATS = {"F64": "<d", "F32": "<f", "F16": "<e", "I64": "<q", "I32": "<i", "I16": "<h", "I8": "<b",
                   "U8": "<B", "BOOL": "<?", "BF16": "bf16"}  # fmt: skip
ReadScalar = Callable[[str, int, int], "bytes | None"]  # (storage key, byte offset, size) -> bytes


def decode_scalar(raw: bytes | None, dtype: str) -> float | None:
    fmt = _SCALAR_FORMATS.get(dtype)
    if raw is None or fmt is None:
        return None
    if fmt == "bf16":
        raw, fmt = b"\x00\x00" + raw, "<f"
    try:
        (value,) = struct.unpack(fmt, raw)
    except struct.error:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _pairs(node: Any) -> list:
    if isinstance(node, DictNode):
        return node.pairs
    if isinstance(node, Call) and node.pairs is not None:
        return node.pairs  # an OrderedDict / AttributeDict
    return []


def _int(value: Any) -> int | None:
    return value if is_count(value) else None


def _number(value: Any, read: ReadScalar) -> float | None:
    """A plain number, or a 0-dim / 1-element tensor read from its storage record."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if not (isinstance(value, Call) and value.tensor is not None and isinstance(value.args, tuple)):
        return None
    dtype, shape = value.tensor
    if shape is None or math.prod(shape) != 1 or len(value.args) < 2:
        return None
    storage, offset = value.args[0], value.args[1]
    if not (isinstance(storage, Persistent) and isinstance(storage.pid, tuple) and len(storage.pid) >= 3):
        return None
    key, size = storage.pid[2], struct.calcsize(_SCALAR_FORMATS.get(dtype, "<d").replace("bf16", "<h"))
    if not isinstance(key, str) or not is_count(offset):
        return None
    return decode_scalar(read(key, offset * size, size), dtype)


def lightning_state(root: Any, read: ReadScalar) -> dict[str, Any] | None:
    """The JSON-ready state of a Lightning checkpoint's root dict; None when it has none of it."""
    top = {k: v for k, v in _pairs(root) if isinstance(k, str)}
    if not top:
        return None
    out: dict[str, Any] = {
        "epoch": _int(top.get("epoch")),
        "global_step": _int(top.get("global_step")),
        "monitor": None,
        "best_model_path": None,
        "best_model_score": None,
        "current_score": None,
        "best_k_models": {},
    }
    for name, state in _pairs(top.get("callbacks")):
        if not (isinstance(name, str) and name.startswith("ModelCheckpoint")):
            continue
        fields = {k: v for k, v in _pairs(state) if isinstance(k, str)}
        if not isinstance(fields.get("monitor"), str):
            continue  # a ModelCheckpoint without a monitor ranks nothing
        out["monitor"] = fields["monitor"][:200]
        path = fields.get("best_model_path")
        out["best_model_path"] = path[:4096] if isinstance(path, str) and path else None
        out["best_model_score"] = _number(fields.get("best_model_score"), read)
        out["current_score"] = _number(fields.get("current_score"), read)
        out["best_k_models"] = {
            k[:4096]: _number(v, read) for k, v in _pairs(fields.get("best_k_models"))[:MAX_BEST_K]
            if isinstance(k, str)
        }  # fmt: skip
        break
    return out
