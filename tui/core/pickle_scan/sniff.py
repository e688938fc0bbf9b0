"""Which files are pickles torch would load: by name (``is_pickle_name``) and by their first bytes
(``looks_like_pickle``: a torch zip, a PROTO opcode, or protocol 0/1 opcodes that replay), without
unpickling anything."""

from __future__ import annotations

import os

from tui.core.files import read_head

PICKLE_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
SNIFF_BYTES = 4096
MAX_SNIFF_BYTES = 64 << 20  # the scan's own limit on pickle bytes
# Formats that are never pickles: loose files with these suffixes are not sniffed (the walk stays cheap
# beside datasets, logs and configs). Anything else may be a pickle under any name.
NOT_PICKLE_SUFFIXES = frozenset(
    ".safetensors .json .jsonl .csv .tsv .txt .md .rst .yaml .yml .toml .ini .cfg .py .sh .log .html .xml "
    ".jpg .jpeg .png .gif .bmp .webp .svg .pdf .mp3 .wav .flac .mp4 .npy .npz .parquet .arrow .h5 .hdf5 "
    ".onnx .tflite .gguf .msgpack .model .vocab .spm .tfevents .lock .distcp .metadata .zip .gz .bz2 .xz "
    ".zst .tar .tgz .ipynb .lance .feather .db .sqlite".split()
)


def is_pickle_name(name: str) -> bool:
    return name.endswith(PICKLE_FILE_SUFFIXES)


def is_pickle_file(name: str, path: str | os.PathLike) -> bool:
    """A file of a checkpoint torch would load (``name`` is the last part of ``path``): a pickle name, less a
    ``.bin`` of raw bytes (a dataset shard, a tokenizer model) whose first bytes are no pickle."""
    return is_pickle_name(name) and (not name.endswith(".bin") or looks_like_pickle(path))


# Loose files listed by name alone; any other candidate is listed when its first bytes are a pickle (torch.load
# reads a pickle under any name, so an unlisted one would be neither shown nor scanned).
LISTED_BY_NAME = (".safetensors", ".pt", ".pth", ".ckpt")


def loose_candidate(name: str) -> bool:
    """A loose file the scan looks at: listed by name, or to be sniffed (``.bin``, ``.pkl``, no suffix...)."""
    return name.endswith(LISTED_BY_NAME) or name.endswith(PICKLE_FILE_SUFFIXES) or may_be_pickle(name)


def may_be_pickle(name: str) -> bool:
    """A loose file worth sniffing: not a known non-pickle format (``.ipynb``, ``.csv``, ``.jpg``...)."""
    dot = name.rfind(".")
    return not name.startswith(".") and (dot <= 0 or name[dot:].lower() not in NOT_PICKLE_SUFFIXES)


def looks_like_pickle(path: str | os.PathLike) -> bool:
    """A torch zip, a pickle with a PROTO opcode, or a protocol 0/1 pickle: its first bytes replay to a STOP,
    or run out while naming a global or after many opcodes (a long pickle). A pickle whose first opcodes
    run past the bytes read (a long string first) is read further, up to the scan's byte limit: hiding a
    payload behind a big first string must not make a file "not a pickle"."""
    want = SNIFF_BYTES
    while True:
        head = read_head(path, want)
        verdict = head_is_pickle(head, final=len(head) < want)
        if verdict is not None:
            return verdict
        if want >= MAX_SNIFF_BYTES:
            return True  # still a well-formed pickle start at the limit: the scan will say "not verified"
        want = min(want * 16, MAX_SNIFF_BYTES)  # 16 MiB * 16 would read 256 MiB, 4x the limit


def head_is_pickle(head: bytes, *, final: bool = True) -> bool | None:
    """Whether ``head`` (a file's first bytes; ``final``: all of them there will be) starts a pickle; None
    when it cannot tell before more bytes are read."""
    if head[:4] == b"PK\x03\x04" or (len(head) >= 2 and head[0] == 0x80 and head[1] <= 5):
        return True
    if not head:
        return False
    from tui.core.pickle_scan.machine import Machine, ScanStop  # here: walks that meet no pickle skip it

    machine = Machine()
    try:
        machine.run(head, 0)
        return True
    except ScanStop as e:
        named = bool(machine.globals) and all(_dotted(g) for g in machine.globals)
        if named or (e.truncated and machine.opcodes >= 8):
            return True
        return None if e.truncated and not final else False


def _dotted(name: str) -> bool:
    """``module.name`` made of identifiers (a text file whose first line starts with "c" is not)."""
    return all(part.isidentifier() for part in name.split("."))
