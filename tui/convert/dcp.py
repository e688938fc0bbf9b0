"""Consolidate a torch Distributed Checkpoint folder into one ``model.safetensors``, and check an export
against its source.

Only the network tensors the core listed (``tui.core.dcp``: optimizer state and non-tensor entries left out)
are loaded, with ``torch.distributed.checkpoint.load`` into tensors of their global shape, in this one
process: DCP reads tensors with ``torch.load(weights_only=True)``, while loading its non-tensor (bytes)
entries would unpickle them freely, so those are never requested. ``.metadata`` itself is unpickled by
torch here; the core has already replayed it statically and refuses a folder whose pickle names globals
off the allowlist.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from tui.convert import ConvertError
from tui.core.pickle_scan.torch_names import TORCH_DTYPE_NAMES
from tui.core.text import first_line

EXPORT = "model.safetensors"


def _torch_dtype(name: str):
    import torch

    for attr, reported in TORCH_DTYPE_NAMES.items():
        if reported == name and isinstance(getattr(torch, attr, None), torch.dtype):
            return getattr(torch, attr)
    raise ConvertError(f"dtype {name} has no torch equivalent")


def load_network(dcp_dir: Path, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> dict:
    """The tensors named in ``tensors`` (name -> (dtype, global shape)), read from ``dcp_dir``."""
    import torch
    import torch.distributed.checkpoint as dcp

    state = {name: torch.empty(shape, dtype=_torch_dtype(dtype)) for name, (dtype, shape) in tensors.items()}
    try:
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
            warnings.simplefilter("ignore", UserWarning)
            dcp.load(state, checkpoint_id=str(dcp_dir), no_dist=True)
    except Exception as e:  # DCP raises CheckpointException, RuntimeError, OSError... all mean "cannot load"
        raise ConvertError(f"{dcp_dir}: cannot load the DCP checkpoint ({first_line(e)})") from None
    return state


def consolidate(dcp_dir: Path, tensors: dict[str, tuple[str, tuple[int, ...]]], out: Path) -> None:
    from safetensors.torch import save_file

    if not tensors:
        raise ConvertError(f"{dcp_dir}: no network tensors to export")
    state = load_network(dcp_dir, tensors)
    save_file({k: v.contiguous() for k, v in state.items()}, str(Path(out) / EXPORT), metadata={"format": "pt"})


def verify(dcp_dir: Path, exported: Path) -> str | None:
    """None when every tensor of ``exported`` equals the same tensor loaded again from ``dcp_dir``."""
    import torch
    from safetensors.torch import load_file

    try:
        ours = load_file(str(exported))
    except Exception as e:  # safetensors raises its own error types for unreadable files
        return f"{exported}: unreadable export ({first_line(e)})"
    table = {name: (_reported(t.dtype), tuple(t.shape)) for name, t in ours.items()}
    try:
        source = load_network(dcp_dir, table)
    except ConvertError as e:
        return str(e)
    for name, tensor in ours.items():
        if not torch.equal(tensor, source[name]):
            return f"{exported}: tensor {name!r} differs from {dcp_dir}"
    return None


def _reported(dtype) -> str:
    return TORCH_DTYPE_NAMES[str(dtype).removeprefix("torch.")]
