"""A MindSpore checkpoint's network weights as one ``model.safetensors``, without MindSpore or torch.

safetensors is a little-endian u64 header length, a JSON header (``{name: {"dtype", "shape",
"data_offsets"}}`` plus ``__metadata__``, padded with spaces to a multiple of 8) and the tensors' raw bytes
in order. MindSpore stores row-major little-endian bytes too, so each tensor's ``tensor_content`` slices are
copied as they are, in file order, names kept; optimizer state is dropped. ``verify`` compares every tensor
of the export with its source, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tui.core.mindspore_ckpt.records import MindSporeReport, MindSporeTensor
from tui.core.safetensors_header import DTYPE_BITS, HeaderError, read_header
from tui.core.text import quoted

_CHUNK = 8 << 20
METADATA = {"format": "pt", "source_format": "mindspore"}


class ExportError(ValueError):
    """The checkpoint cannot be exported; one line naming the tensor and why."""


def exportable(report: MindSporeReport) -> list[MindSporeTensor]:
    """The network tensors to export; raises ExportError for one safetensors cannot hold."""
    tensors = report.network()
    for t in tensors:
        if t.dtype not in DTYPE_BITS or t.shape is None or t.expected_nbytes != t.nbytes:
            raise ExportError(
                f"tensor {quoted(t.name)} ({t.mindspore_type}) cannot be written as safetensors "
                f"(unknown type, unusable dims or a wrong size)"
            )
    if not tensors:
        raise ExportError("no network tensors to export")
    return tensors


def write_safetensors(report: MindSporeReport, source: Path, dest: Path) -> str:
    """Write ``report``'s network tensors, read from ``source``, to ``dest``; return the file's sha256."""
    tensors = exportable(report)
    header: dict[str, object] = {"__metadata__": METADATA}
    offset = 0
    for t in tensors:
        header[t.name] = {
            "dtype": t.dtype,
            "shape": list(t.shape or ()),
            "data_offsets": [offset, offset + t.nbytes],
        }
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    digest = hashlib.sha256()
    with open(source, "rb") as fin, open(dest, "wb") as fout:
        for block in (len(raw).to_bytes(8, "little"), raw):
            digest.update(block)
            fout.write(block)
        for t in tensors:
            for start, length in t.slices:
                fin.seek(start)
                while length > 0:
                    chunk = fin.read(min(length, _CHUNK))
                    if not chunk:
                        raise ExportError(
                            f"{source.name}: ended inside tensor {quoted(t.name)} while copying it"
                        )
                    digest.update(chunk)
                    fout.write(chunk)
                    length -= len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return digest.hexdigest()


def verify(report: MindSporeReport, source: Path, exported: Path) -> str | None:
    """None when ``exported`` holds exactly ``report``'s network tensors (names, dtypes, shapes, bytes) as
    read again from ``source``; else one line saying what differs."""
    try:
        header = read_header(exported)
    except HeaderError as e:
        return f"{exported.name}: unreadable export ({e})"
    if header.problems:
        return header.problems[0]
    network = report.network()
    if [t.name for t in network] != list(header.tensors):
        return f"{exported.name}: holds other tensors than the network of {source.name}"
    data_start = 8 + header.header_len
    with open(source, "rb") as fsrc, open(exported, "rb") as fout:
        for t in network:
            entry = header.tensors[t.name]
            if entry.dtype != t.dtype or entry.shape != t.shape:
                return f"{exported.name}: tensor {quoted(t.name)} is {entry.dtype} {list(entry.shape)} in the export"
            fout.seek(data_start + entry.start)
            for start, length in t.slices:
                fsrc.seek(start)
                while length > 0:
                    n = min(length, _CHUNK)
                    if fsrc.read(n) != fout.read(n):
                        return (
                            f"{exported.name}: the bytes of tensor {quoted(t.name)} differ from {source.name}"
                        )
                    length -= n
    return None
