"""MindSpore ``.ckpt`` files, read from their protobuf wire format: bounded, without MindSpore, and never
reading ``tensor_content`` (each tensor's bytes are skipped by their length).

API::

    sniff(head: bytes) -> "mindspore" | "encrypted" | None      # from a file's first 16 bytes
    read_mindspore(path, *, verify_crc=False) -> MindSporeReport  # never raises
    @dataclass MindSporeTensor(name, mindspore_type, dtype, shape, offset, nbytes, slices, role)
    @dataclass MindSporeReport(format, file_size, entries, tensors, parameters, dtypes, optimizer_tensors,
                               optimizer_parameters, modules, module_prefix, largest, scalars, strings,
                               crc, crc_ok, problems, unsupported)
        .network() / .tensor_table() / .inspect_json()

The format (MindSpore 2.x ``checkpoint.proto``)::

    message Checkpoint {
      message Value { required string tag = 1;
                      oneof value { TensorProto tensor = 2; MapTensorProto maptensor = 3; } }
      repeated Value value = 1; }
    message TensorProto { repeated int64 dims = 1; required string tensor_type = 2;
                          required bytes tensor_content = 3; }
    message MapTensorProto { repeated TensorProto tensor = 1; }

``save_checkpoint`` writes one ``Checkpoint`` message per parameter slice and concatenates them (protobuf
merges repeated fields), so a file is a run of ``value`` fields; a tensor over 512 MiB is split into
consecutive values with the same tag, which the loader joins. ``crc_check=True`` appends ``b"crc_num"``
and a 10-byte big-endian CRC32 of everything before it. ``enc_key`` encrypts the whole file, which then
starts with the bytes ``D8 5E 3A 7F``: reported as unsupported (``unsupported``), never as broken.
``append_dict`` strings have ``tensor_type "str"`` and UTF-32 content; ``dims == [0]`` is a scalar, as
MindSpore's loader reads it.

What is checked (each a ``problems`` line naming the file and the byte offset): a value that runs past
the end of the file (truncated; the tensors before it are intact), ``tensor_content`` shorter or longer
than dims x itemsize, dims that are negative, overflow int64 numel or number more than 64, a
``tensor_type`` MindSpore does not know, a tag written twice apart (the later one wins on load), a value
without tag, type or content, field keys that are not protobuf (corrupt bytes), a CRC that does not match
(only with ``verify_crc``: it reads the whole file).

Network and optimizer: a tensor is optimizer state when its name is a known training scalar
(``global_step``, ``learning_rate``, ``beta1_power``, ``momentum``, ``epoch_num``, ...) or
``<slot>.<name of another tensor>`` (``moment1.fc.weight`` beside ``fc.weight``) or starts with a known
slot (``moments.``, ``accum.``, ``moment1.``, ``mean_square.``, ...). ``tensors``/``parameters``/``dtypes``
count the network only (what a ``model.safetensors`` export holds); the optimizer is counted apart.
``scalars`` holds the values of small known scalars (``global_step``, ``epoch_num``, ``step_num``,
``learning_rate``), read from at most 16 bytes each.
"""

from __future__ import annotations

from tui.core.lazy import lazy_attributes

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from tui.core.mindspore_ckpt.records import MINDSPORE_TYPES, MindSporeReport, MindSporeTensor
    from tui.core.mindspore_ckpt.wire import read_mindspore, sniff

__all__ = ["MINDSPORE_TYPES", "MindSporeReport", "MindSporeTensor", "read_mindspore", "sniff"]
# Loaded on first use (PEP 562): the scan imports ``runs`` for every walk; the readers wait for a file.
_LAZY = {
    "MINDSPORE_TYPES": "records", "MindSporeReport": "records", "MindSporeTensor": "records",
    "read_mindspore": "wire", "sniff": "wire",
}  # fmt: skip


__getattr__ = lazy_attributes(__name__, _LAZY, globals())
