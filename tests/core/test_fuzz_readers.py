"""Seeded mutation fuzzing of the three readers: >= 10,000 mutated safetensors files, shard indexes and
torch pickles. No exception may escape (read_header may raise HeaderError, nothing else), and no call may
hang: the slowest single call must stay under a second (a hang guard, not a benchmark)."""

from __future__ import annotations

import io
import json
import os
import random
import struct
import time
import zipfile

from tests.fixtures.readers import st_bytes, st_header, torch_like_pickle
from tui.core.pickle_scan import scan_pickle
from tui.core.safetensors_header import HeaderError, read_header
from tui.core.weights import summarize_weights

SEED = 20261123
N_SAFETENSORS = 4000
N_INDEX = 2000
N_PICKLE = 4500
HANG_GUARD_S = 1.0

_U64_EDGES = [0, 1, 2, 7, 8, 9, 2**31 - 1, 2**31, 2**32, 2**60, 2**63 - 1, 2**63, 2**64 - 1]
_INTERESTING_NUMBERS = ["-1", "0", "1e309", "-0", "18446744073709551616", "9" * 40, "1.5", "true", "null"]
_INTERESTING_STRINGS = ['""', '"../../etc/passwd"', '"/abs.safetensors"', '"\\u0000"', '"x\\ny"', '"F99"',
                        '"BF16"', '"model.safetensors.index.json"', '"' + "a" * 300 + '"', '"\\udcff"']  # fmt: skip
_PICKLE_BYTES = b"()]}.NqhXKMJRQtu\x80\x85\x86\x87\x88\x89\x8c\x93\x94\x95cbe0s"


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    op = rng.randrange(7)
    if op == 0 and b:  # flip a few bytes
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= rng.randrange(1, 256)
    elif op == 1:  # truncate
        del b[rng.randrange(len(b) + 1) :]
    elif op == 2:  # insert random bytes
        at = rng.randrange(len(b) + 1)
        b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif op == 3 and b:  # delete a span
        at = rng.randrange(len(b))
        del b[at : at + rng.randint(1, 32)]
    elif op == 4 and b:  # duplicate a span somewhere else
        at = rng.randrange(len(b))
        span = b[at : at + rng.randint(1, 64)]
        to = rng.randrange(len(b) + 1)
        b[to:to] = span
    elif op == 5 and b:  # overwrite with pickle-ish / edge bytes
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.choice(_PICKLE_BYTES + b"\x00\xff\x7f")
    elif b:  # a mutation of a mutation
        return _mutate(rng, _mutate(rng, bytes(b)))
    return bytes(b)


def _rewrite_length(rng: random.Random, data: bytes) -> bytes:
    size = len(data)
    value = rng.choice(_U64_EDGES + [size, size - 8, size - 9, size - 7, rng.randrange(2**64)])
    return struct.pack("<Q", max(0, value) % 2**64) + data[8:]


def _mutate_json(rng: random.Random, text: str, *, values_only: bool = False) -> str:
    op = rng.randrange(2 if values_only else 4)
    if op == 0:  # replace a number
        spots = [i for i, c in enumerate(text) if c.isdigit()]
        if spots:
            i = rng.choice(spots)
            j = i
            while j < len(text) and text[j].isdigit():
                j += 1
            return text[:i] + rng.choice(_INTERESTING_NUMBERS) + text[j:]
    if op == 1:  # replace a string
        quotes = [i for i, c in enumerate(text) if c == '"']
        if len(quotes) >= 2:
            k = rng.randrange(len(quotes) // 2) * 2
            i, j = quotes[k], quotes[k + 1] + 1
            return text[:i] + rng.choice(_INTERESTING_STRINGS) + text[j:]
    if op == 2:  # break or swap brackets
        spots = [i for i, c in enumerate(text) if c in "[]{}"]
        if spots:
            i = rng.choice(spots)
            return text[:i] + rng.choice("[]{}") + text[i + 1 :]
    return _mutate(rng, text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")


def _mutate_header_json(rng: random.Random, data: bytes) -> bytes:
    """Mutate the header as JSON text and re-frame it with a correct length, so the mutation reaches the
    entry / offset checks instead of dying in the JSON parser."""
    n = int.from_bytes(data[:8], "little")
    text = data[8 : 8 + n].decode("utf-8")
    values_only = rng.random() < 0.8
    for _ in range(rng.randint(1, 3)):
        text = _mutate_json(rng, text, values_only=values_only)
    raw = text.encode("utf-8", "surrogateescape")
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def _safetensors_seeds() -> list[bytes]:
    seeds = [
        st_bytes(
            {"a": ("F32", [2, 3]), "b": ("BF16", [4]), "c": ("I64", [1]), "d": ("F4", [2, 2])},
            metadata={"format": "pt"},
        ),  # fmt: skip
        st_bytes({f"layer.{i}.w": ("F16", [i + 1, 2]) for i in range(6)}),
        st_bytes(header=b"{}"),
        st_bytes({"scalar": ("F64", []), "empty": ("U8", [0, 5]), "mask": ("BOOL", [3])}),
    ]
    try:
        import torch
        from safetensors.torch import save

        seeds.append(
            save({"w": torch.zeros(3, 4), "h": torch.zeros(2, dtype=torch.float16)}, {"format": "pt"})
        )
    except ImportError:
        pass
    return seeds


def _pickle_seeds() -> list[bytes]:
    """data.pkl bodies: torch's own when torch is here, hand-written torch-shaped ones always."""
    seeds = [
        torch_like_pickle({"a.w": ("F32", [4, 3]), "a.b": ("BF16", [4]), "ids": ("I64", [5])}),
        torch_like_pickle({}),
    ]
    try:
        import torch

        buf = io.BytesIO()
        obj = {"state_dict": {"w": torch.zeros(2, 2), "p": torch.nn.Parameter(torch.ones(3))},
               "epoch": 2, "pytorch-lightning_version": "2.6.6", "f8": torch.zeros(2, dtype=torch.float8_e5m2)}  # fmt: skip
        torch.save(obj, buf)
        seeds.append(zipfile.ZipFile(io.BytesIO(buf.getvalue())).read("archive/data.pkl"))
        legacy = io.BytesIO()
        torch.save({"w": torch.zeros(3)}, legacy, _use_new_zipfile_serialization=False)
        seeds.append(legacy.getvalue())
    except ImportError:
        pass
    return seeds


def _zip(data_pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        for key in range(4):
            z.writestr(f"archive/data/{key}", bytes(48))
    return buf.getvalue()


class _Overwriter:
    """Rewrites one file in place through a kept-open descriptor. ``Path.write_bytes`` truncates on open,
    and ext4 flushes a file truncated that way when it is closed (auto_da_alloc): ~4 ms a write here,
    which would dominate the fuzz run."""

    def __init__(self, path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def put(self, data: bytes) -> None:
        os.pwrite(self.fd, data, 0)
        os.ftruncate(self.fd, len(data))

    def close(self) -> None:
        os.close(self.fd)


class _Timer:
    def __init__(self) -> None:
        self.calls = 0
        self.worst = 0.0
        self.worst_case = ""

    def __call__(self, fn, *args, case: str = ""):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            took = time.perf_counter() - start
            self.calls += 1
            if took > self.worst:
                self.worst, self.worst_case = took, case


def test_fuzz_readers(tmp_path):
    rng = random.Random(SEED)
    timer = _Timer()
    mutated = 0

    # --- safetensors files: read_header (HeaderError allowed) and summarize_weights (never raises)
    st_path = tmp_path / "fuzz.safetensors"
    st_file = _Overwriter(st_path)
    seeds = _safetensors_seeds()
    for i in range(N_SAFETENSORS):
        seed = rng.choice(seeds)
        mode = rng.random()
        if mode < 0.2:
            data = _rewrite_length(rng, seed)
        elif mode < 0.6:
            data = _mutate_header_json(rng, seed)
        else:
            data = _mutate(rng, seed)
        st_file.put(data)
        mutated += 1
        try:
            header = timer(read_header, st_path, case=f"st#{i}")
            assert all(isinstance(p, str) and "\n" not in p for p in header.problems)
        except HeaderError as e:
            assert "\n" not in str(e)
        if i % 4 == 0:
            s = timer(summarize_weights, st_path, case=f"st-sum#{i}")
            json.dumps(s.to_json())

    # --- shard indexes: mutate the JSON beside two valid shards
    folder = tmp_path / "sharded"
    folder.mkdir()
    shards = {
        "model-00001-of-00002.safetensors": {"a.w": ("F32", [2, 2]), "a.b": ("F32", [2])},
        "model-00002-of-00002.safetensors": {"b.w": ("BF16", [3, 3])},
    }
    for name, spec in shards.items():
        (folder / name).write_bytes(st_bytes(header=st_header(spec)))
    index = {
        "metadata": {"total_size": 42, "total_parameters": 15},
        "weight_map": {t: name for name, spec in shards.items() for t in spec},
    }
    index_text = json.dumps(index, indent=2)
    index_file = _Overwriter(folder / "model.safetensors.index.json")
    for i in range(N_INDEX):
        text = _mutate_json(rng, index_text)
        if rng.random() < 0.3:
            text = _mutate_json(rng, text)
        index_file.put(text.encode("utf-8", "surrogateescape"))
        mutated += 1
        s = timer(summarize_weights, folder, case=f"index#{i}")
        json.dumps(s.to_json())
        assert all(isinstance(p, str) for p in s.problems)

    # --- torch pickles: mutated data.pkl inside a valid zip, raw (legacy) pickles, and raw zip bytes
    pkl_path = tmp_path / "fuzz.pt"
    pkl_file = _Overwriter(pkl_path)
    pseeds = _pickle_seeds()
    zipped_seed = _zip(pseeds[0])
    for i in range(N_PICKLE):
        mode = rng.random()
        if mode < 0.45:
            data = _zip(_mutate(rng, rng.choice(pseeds)))
        elif mode < 0.9:
            data = _mutate(rng, rng.choice(pseeds))
        else:
            data = _mutate(rng, zipped_seed)
        pkl_file.put(data)
        mutated += 1
        r = timer(scan_pickle, pkl_path, case=f"pickle#{i}")
        assert r.format in ("zip", "legacy", "not-pickle")
        json.dumps(r.to_json())

    for f in (st_file, index_file, pkl_file):
        f.close()
    assert mutated >= 10_000
    assert timer.worst < HANG_GUARD_S, f"slowest call {timer.worst:.3f}s ({timer.worst_case})"
