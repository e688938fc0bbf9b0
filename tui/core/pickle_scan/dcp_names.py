"""The globals a torch Distributed Checkpoint ``.metadata`` pickle names (torch 2.0 to 2.13): its dataclasses,
the memory-format enum ``TensorProperties`` pickles instead of ``torch.memory_format``, and the per-item storage
record. Each only rebuilds data; ``policy`` allows them exactly. tests/core/test_dcp.py replays real
``.metadata`` files and requires them to come out clean."""

from __future__ import annotations

DCP_METADATA_GLOBALS = frozenset(
    {
        f"torch.distributed.checkpoint.metadata.{name}"
        for name in (
            "Metadata",
            "MetadataIndex",
            "StorageMeta",
            "TensorStorageMetadata",
            "BytesStorageMetadata",
            "ChunkStorageMetadata",
            "TensorProperties",
            "_MEM_FORMAT_ENCODING",
        )
    }
    | {"torch.distributed.checkpoint.filesystem._StorageInfo"}
)
