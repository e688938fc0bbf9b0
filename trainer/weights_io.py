"""Write a model's weights as HF safetensors (sharded with an index above a size), hashing while writing.

What ``save_pretrained`` does for the weights (drop tied duplicates, undo load-time renames, shard with
``split_torch_state_dict_into_shards``, same file and index names), except how the bytes reach the disk:
each tensor's memory is written straight to the file (no serialised copy of the shard, which
safetensors' ``save``/``save_file`` make, holding the GIL) while a second thread sha256-hashes the same
memory (hashlib releases the GIL). The commit protocol gets the digests without reading anything back.
The file is a standard safetensors file (8-byte header length, JSON header padded to 8 bytes, data).
bench/bench_checkpoint.py measures it against a plain write of the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"


_DTYPE_NAMES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL", "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}  # fmt: skip


def _tensor_bytes(tensor) -> memoryview:
    import torch

    flat = tensor.reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def safetensors_header(tensors: dict) -> bytes:
    """Length prefix + JSON header for ``tensors`` laid out in insertion order."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, tensor in tensors.items():
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype not in _DTYPE_NAMES:
            raise ValueError(f"cannot write tensor {name!r}: dtype {dtype} has no safetensors name")
        size = tensor.numel() * tensor.element_size()
        header[name] = {
            "dtype": _DTYPE_NAMES[dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keeps tensor data 8-byte aligned, as safetensors does
    return len(raw).to_bytes(8, "little") + raw


def write_safetensors(path: Path, tensors: dict, pool: ThreadPoolExecutor) -> str:
    """Write ``tensors`` (contiguous, CPU) to ``path``, hashing in ``pool`` meanwhile; returns sha256."""
    digest = hashlib.sha256()
    pending = []
    with open(path, "wb") as f:
        for chunk in [safetensors_header(tensors)] + [_tensor_bytes(t) for t in tensors.values()]:
            pending.append(pool.submit(digest.update, chunk))  # one worker: updates stay in order
            f.write(chunk)
        # Flush to disk now, while the hash thread catches up: the commit protocol's own fsync of this
        # file then finds nothing dirty, instead of running after the hash, in series.
        f.flush()
        os.fsync(f.fileno())
    for future in pending:
        future.result()
    return digest.hexdigest()


def _without_tied_copies(model, state_dict: dict) -> dict:
    """Drop the second name of each tied pair (safetensors refuses aliases). transformers' own rule (which
    name stays) when it has one; else the first name of each shared tensor stays, and from_pretrained
    ties the other back. tests/trainer/test_weights_io.py pins both against save_pretrained."""
    try:
        from transformers.modeling_utils import remove_tied_weights_from_state_dict
    except ImportError:
        seen: set[tuple[int, int, tuple[int, ...]]] = set()
        out = {}
        for key, tensor in state_dict.items():
            alias = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
            if alias not in seen or not tensor.numel():
                out[key] = tensor
            seen.add(alias)
        return out
    return remove_tied_weights_from_state_dict(state_dict, model)


def _original_key_names(model, state_dict: dict) -> dict:
    """Undo the key renames transformers applies at load time (none without that machinery)."""
    try:
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:
        return state_dict
    return revert_weight_conversion(model, state_dict)


def _prepared_state_dict(model, state_dict: dict) -> dict:
    """The tensors save_pretrained would write: tied copies removed, original key names restored."""
    state_dict = _original_key_names(model, _without_tied_copies(model, dict(state_dict)))
    seen: set[tuple[int, int]] = set()
    out = {}
    for key, tensor in state_dict.items():
        tensor = tensor.detach().to("cpu").contiguous()
        storage = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        # safetensors refuses two names on one storage; a copy keeps both keys loadable
        out[key] = tensor.clone() if storage in seen and tensor.numel() else tensor
        seen.add(storage)
    return out


def write_weights(model, state_dict: dict, folder: Path, max_shard_size: int | str) -> dict[str, str]:
    """Write ``state_dict`` under ``folder``; returns {file name: sha256} for the commit manifest."""
    from huggingface_hub import split_torch_state_dict_into_shards

    folder = Path(folder)
    tensors = _prepared_state_dict(model, state_dict)
    split = split_torch_state_dict_into_shards(
        tensors, filename_pattern="model{suffix}.safetensors", max_shard_size=max_shard_size
    )
    hashes: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=1) as pool:
        for filename, names in split.filename_to_tensors.items():
            shard = {name: tensors[name] for name in sorted(names)}
            hashes[filename] = write_safetensors(folder / filename, shard, pool)
    if split.is_sharded:
        index = {
            "metadata": {"total_parameters": sum(t.numel() for t in tensors.values()), **split.metadata},
            "weight_map": split.tensor_to_filename,
        }
        (folder / SAFE_WEIGHTS_INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return hashes


def save_config(model, folder: Path, dtype) -> None:
    """config.json as save_pretrained writes it: the architecture and the dtype of the saved weights."""
    config = model.config
    config.architectures = [type(model).__name__]
    config.dtype = str(dtype).split(".")[-1]
    config.save_pretrained(str(folder))
