"""Byte-level builders for the reader tests: safetensors files and pickles written by hand (no torch).

The torch-backed tests write real files with torch/safetensors/transformers; these builders make the
hostile variants (and the fuzz seeds when torch is missing) without trusting any library to be wrong
on purpose.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from typing import Any

ITEM_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
    "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}  # fmt: skip


def numel(shape: list[int] | tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def st_header(tensors: dict[str, tuple[str, list[int]]], metadata: dict[str, str] | None = None) -> dict:
    """A valid header dict with contiguous offsets, in the given order."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    cursor = 0
    for name, (dtype, shape) in tensors.items():
        size = numel(shape) * ITEM_BITS[dtype] // 8
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [cursor, cursor + size]}
        cursor += size
    return header


def data_len(header: dict) -> int:
    """Bytes of data the header describes (0 when it is malformed; at most 1 MiB, for hostile offsets)."""
    ends = []
    for k, v in header.items():
        offsets = v.get("data_offsets") if k != "__metadata__" and isinstance(v, dict) else None
        if isinstance(offsets, list) and len(offsets) == 2 and isinstance(offsets[1], int):
            ends.append(offsets[1])
    return max(0, min(max(ends, default=0), 1 << 20))


def st_bytes(
    tensors: dict[str, tuple[str, list[int]]] | None = None,
    *,
    header: dict | bytes | None = None,
    data: bytes | None = None,
    length: int | None = None,
    metadata: dict[str, str] | None = None,
) -> bytes:
    """A safetensors file: 8-byte length, header (dict -> JSON padded to 8 bytes, or raw bytes), data."""
    if header is None:
        header = st_header(tensors or {}, metadata)
    if isinstance(header, dict):
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        if data is None:
            data = bytes(data_len(header))
    else:
        raw = header
    if data is None:
        data = b""
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


# ----------------------------------------------------------------------------------- pickle assembler


class Asm:
    """Just enough of a pickle assembler to write torch-shaped and malicious pickles by hand."""

    def __init__(self, proto: int = 2) -> None:
        self.out = bytearray(b"\x80" + bytes([proto]))
        self.memo = 0

    def raw(self, b: bytes) -> Asm:
        self.out += b
        return self

    def put(self) -> Asm:
        self.out += b"q" + bytes([self.memo])
        self.memo += 1
        return self

    def get(self, i: int) -> Asm:
        return self.raw(b"h" + bytes([i]))

    def memoize(self) -> Asm:
        self.memo += 1
        return self.raw(b"\x94")

    def str(self, s: str) -> Asm:
        b = s.encode()
        return self.raw(b"X" + struct.pack("<I", len(b)) + b)

    def int(self, i: int) -> Asm:
        return self.raw(b"J" + struct.pack("<i", i))

    def glob(self, module: str, name: str) -> Asm:
        return self.raw(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def mark(self) -> Asm:
        return self.raw(b"(")

    def tuple(self) -> Asm:
        return self.raw(b"t")

    def reduce(self) -> Asm:
        return self.raw(b"R")

    def stop(self) -> bytes:
        return bytes(self.out + b".")


STORAGE = {"F32": ("FloatStorage", 4), "F16": ("HalfStorage", 2), "BF16": ("BFloat16Storage", 2),
           "I64": ("LongStorage", 8), "U8": ("ByteStorage", 1), "BOOL": ("BoolStorage", 1)}  # fmt: skip


def torch_like_pickle(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    """The data.pkl torch.save writes for a state_dict of contiguous, unshared tensors."""
    a = Asm().raw(b"}").put().mark()
    for key, (name, (dtype, shape)) in enumerate(tensors.items()):
        a.str(name).glob("torch._utils", "_rebuild_tensor_v2")
        a.mark().mark().str("storage").glob("torch", STORAGE[dtype][0]).str(str(key)).str("cpu")
        a.int(numel(shape)).tuple().raw(b"Q")  # BINPERSID
        a.int(0).mark()
        for d in shape:
            a.int(d)
        a.tuple().mark()
        stride = 1
        strides = []
        for d in reversed(shape):
            strides.append(stride)
            stride *= d
        for s in reversed(strides):
            a.int(s)
        a.tuple().raw(b"\x89").glob("collections", "OrderedDict").raw(b")").reduce().tuple().reduce()
    return a.raw(b"u").stop()


def torch_zip(data_pkl: bytes, storages: dict[str, int], *, name: str = "archive") -> bytes:
    """A torch.save-shaped zip (stored, like torch writes it) around ``data_pkl``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{name}/data.pkl", data_pkl)
        z.writestr(f"{name}/byteorder", b"little")
        for key, nbytes in storages.items():
            z.writestr(f"{name}/data/{key}", bytes(nbytes))
        z.writestr(f"{name}/version", b"3\n")
    return buf.getvalue()


def torch_like_zip(tensors: dict[str, tuple[str, list[int]]], *, name: str = "archive") -> bytes:
    sizes = {str(i): numel(shape) * STORAGE[dtype][1] for i, (dtype, shape) in enumerate(tensors.values())}
    return torch_zip(torch_like_pickle(tensors), sizes, name=name)
