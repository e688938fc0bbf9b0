"""The dtypes safetensors knows, with their widths: what tui.core.safetensors_header checks headers against
and what ``TensorEntry`` (tui.core.tensor_entry) sizes tensors by, apart from both so that neither imports
the other."""

from __future__ import annotations

__all__ = ["DTYPE_BITS"]

# Every dtype of safetensors 0.8 (its Rust ``Dtype`` enum, 22 variants) with its width in bits. F4 and the
# F6 types are packed sub-byte types: a tensor's byte length is numel * bits / 8, which must be whole.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
