"""The file-level part of the broken/hostile corpus: every case is a one-line HeaderError from read_header,
or a problem (never an exception) from summarize_weights / scan_pickle, and none of them is slow."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import struct
import time
import zipfile

import pytest

from tests.fixtures.readers import Asm, st_bytes, st_header, torch_like_zip
from tui.core.pickle_scan import scan_pickle
from tui.core.safetensors_header import HeaderError, read_header
from tui.core.weights import summarize_weights

GOOD = st_header({"a": ("F32", [2, 3]), "b": ("BF16", [4])})


def _entry(**kw):
    e = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    e.update(kw)
    return {"t": e}


# name -> (file bytes, fragment of the HeaderError message)
HEADER_ERRORS = {
    "zero-byte": (b"", "zero-byte file"),
    "seven-bytes": (b"\x01\x00\x00\x00\x00\x00\x00", "too short"),
    "length-2**60": (struct.pack("<Q", 2**60) + b"{}", "exceeds the"),
    "length-u64-max": (struct.pack("<Q", 2**64 - 1) + b"{}", "exceeds the"),
    "length-past-eof": (struct.pack("<Q", 1000) + b'{"a": 1}', "runs past the end"),
    "non-json": (st_bytes(header=b"this is not json"), "not valid JSON"),
    "empty-header": (st_bytes(header=b""), "not valid JSON"),
    "non-utf8": (st_bytes(header=b'{"\xff\xfe": 1}'), "not UTF-8"),
    "json-array": (st_bytes(header=b"[1, 2, 3]"), "JSON array, not an object"),
    "json-string": (st_bytes(header=b'"hello"'), "JSON string, not an object"),
    "json-null": (st_bytes(header=b"null"), "JSON null, not an object"),
    "deep-json": (st_bytes(header=b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}"), "nested too deeply"),
    "huge-int-text": (st_bytes(header=b'{"a": {"shape": [' + b"9" * 5000 + b"]}}"), "not valid JSON"),
    "entry-not-object": (st_bytes(header={"t": [1, 2]}), "entry is not an object"),
    "unknown-dtype": (st_bytes(header=_entry(dtype="F99")), "unknown dtype 'F99'"),
    "dtype-not-string": (st_bytes(header=_entry(dtype=7)), "unknown dtype 7"),
    "negative-shape": (st_bytes(header=_entry(shape=[-1, 4])), "negative dimension"),
    "float-shape": (st_bytes(header=_entry(shape=[2.0])), "list of integers"),
    "bool-shape": (st_bytes(header=_entry(shape=[True])), "list of integers"),
    "shape-not-list": (st_bytes(header=_entry(shape="2")), "list of integers"),
    "dim-over-u64": (st_bytes(header=_entry(shape=[2**64])), "overflows u64"),
    "numel-over-u64": (st_bytes(header=_entry(shape=[2**40, 2**40])), "overflows u64"),
    "many-huge-dims": (
        st_bytes(
            header=b'{"t": {"dtype": "U8", "shape": ['
            + b"4611686018427387904," * 300_000
            + b'1], "data_offsets": [0, 1]}}'
        ),
        "overflows u64",
    ),  # fmt: skip
    "offsets-reversed": (st_bytes(header=_entry(data_offsets=[8, 0])), "end 0 < start 8"),
    "offsets-negative": (st_bytes(header=_entry(data_offsets=[-8, 0])), "two non-negative integers"),
    "offsets-one": (st_bytes(header=_entry(data_offsets=[0])), "two non-negative integers"),
    "offsets-over-u64": (st_bytes(header=_entry(data_offsets=[0, 2**64])), "two non-negative integers"),
    "offsets-missing": (st_bytes(header={"t": {"dtype": "F32", "shape": [2]}}), "data_offsets"),
}


@pytest.mark.parametrize("case", list(HEADER_ERRORS))
def test_header_errors(tmp_path, case):
    data, fragment = HEADER_ERRORS[case]
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(HeaderError) as info:
        read_header(path)
    msg = str(info.value)
    assert fragment in msg
    assert msg.startswith("model.safetensors: ") and "\n" not in msg and len(msg) < 300
    s = summarize_weights(tmp_path)
    assert msg in s.problems and s.tensors == 0
    assert time.perf_counter() - start < 5  # a hang guard, not a benchmark


# name -> (file bytes, fragment of the problem)
HEADER_PROBLEMS = {
    "truncated": (st_bytes(header=GOOD)[:-5], "truncated: tensor data ends at byte 32"),
    "truncated-to-header": (st_bytes(header=GOOD, data=b""), "file holds only 0 data bytes"),
    "overlapping": (
        st_bytes(
            header={
                "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
            },
            data=bytes(24),
        ),
        "overlapping data offsets: 'a' and 'b'",
    ),
    "same-offsets": (
        st_bytes(
            header={
                "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                "b": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
            },
            data=bytes(16),
        ),
        "overlapping data offsets",
    ),
    "size-mismatch": (st_bytes(header=_entry(shape=[3]), data=bytes(8)), "byte length != numel * itemsize"),
    "gap": (
        st_bytes(header={"t": {"dtype": "U8", "shape": [2], "data_offsets": [6, 8]}}, data=bytes(8)),
        "6 unused bytes before 't'",
    ),
    "trailing": (st_bytes(header=GOOD, data=bytes(32 + 100)), "100 trailing bytes"),
    "metadata-not-map": (st_bytes(header={"__metadata__": [1], **GOOD}), "__metadata__ is not"),
    "leading-space": (st_bytes(header=b' {"__metadata__": {}}'), "does not start with '{'"),
}


@pytest.mark.parametrize("case", list(HEADER_PROBLEMS))
def test_header_problems(tmp_path, case):
    data, fragment = HEADER_PROBLEMS[case]
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    h = read_header(path)
    assert any(fragment in p for p in h.problems), h.problems
    assert all("\n" not in p for p in h.problems)
    s = summarize_weights(path)
    assert any(fragment in p for p in s.problems)
    assert s.files[0]["ok"] is False


def test_many_overlaps_are_capped_in_one_line(tmp_path):
    header = {f"t{i}": {"dtype": "U8", "shape": [10], "data_offsets": [0, 10]} for i in range(500)}
    path = tmp_path / "x.safetensors"
    path.write_bytes(st_bytes(header=header, data=bytes(10)))
    (problem,) = read_header(path).problems
    assert "and 487 more" in problem and len(problem) < 2000


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
def test_fifo_named_like_weights_does_not_block(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(HeaderError, match="not a regular file"):
        read_header(fifo)
    pt = tmp_path / "model.pt"
    os.mkfifo(pt)
    r = scan_pickle(pt)
    assert r.format == "not-pickle" and "not a regular file" in r.problems[0]
    assert any("not a regular file" in p for p in summarize_weights([fifo]).problems)


def test_non_utf8_file_names(tmp_path):
    folder = os.fsencode(tmp_path)
    name = os.path.join(folder, b"w\xff\xfe.safetensors")
    with open(name, "wb") as f:
        f.write(st_bytes(header=GOOD)[:-1])
    s = summarize_weights(tmp_path)
    assert s.tensors == 2
    assert any("truncated" in p for p in s.problems)
    json.dumps(s.to_json())
    for p in s.problems:
        p.encode("utf-8")  # printable: no lone surrogates in messages
    pt = os.path.join(folder, b"m\xff.pt")
    with open(pt, "wb") as f:
        f.write(os.urandom(64))
    r = scan_pickle(pt)
    for p in r.problems:
        p.encode("utf-8")


def test_oversized_index_is_refused_without_reading_it(tmp_path):
    idx = tmp_path / "model.safetensors.index.json"
    with open(idx, "wb") as f:
        f.truncate(65 << 20)  # sparse: costs no disk
    s = summarize_weights(tmp_path)
    assert any("over the 64 MiB limit" in p for p in s.problems)


def test_deeply_nested_index_json(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_bytes(
        b'{"weight_map": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    )
    s = summarize_weights(tmp_path)
    assert any("index is not valid JSON" in p for p in s.problems)


# ---------------------------------------------------------------------------------------------- pickles


def _torch_zip_bytes() -> bytes:
    return torch_like_zip({"a.w": ("F32", [8, 8]), "b.w": ("BF16", [16])})


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9, 0.999])
def test_truncated_zip(tmp_path, keep):
    data = _torch_zip_bytes()
    path = tmp_path / "model.ckpt"
    path.write_bytes(data[: int(len(data) * keep)])
    r = scan_pickle(path)
    assert r.format == "zip"
    assert r.problems and "zip central directory missing: truncated file?" in r.problems[0]


def test_truncated_real_torch_save(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "fer-5_449.ckpt"
    torch.save({"w": torch.zeros(64, 64), "b": torch.zeros(64)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])  # chop the tail: the central directory goes first
    r = scan_pickle(path)
    assert r.format == "zip" and "zip central directory missing" in r.problems[0]


def test_zip_with_bad_crc_on_data_pkl(tmp_path):
    data = bytearray(_torch_zip_bytes())
    at = data.index(b"_rebuild_tensor_v2")
    data[at] ^= 0x20  # same length, different bytes: CRC no longer matches
    path = tmp_path / "crc.pt"
    path.write_bytes(bytes(data))
    r = scan_pickle(path)
    # torch ignores the CRC, so the pickle is still judged: the changed name is off the allowlist
    assert r.format == "zip" and any("CRC mismatch" in p for p in r.problems)
    assert r.verdict == "unsafe" and r.unsafe_globals == ["torch._utils.\x7frebuild_tensor_v2"]


def test_zip_without_data_pkl(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "hello")
    path = tmp_path / "x.pt"
    path.write_bytes(buf.getvalue())
    r = scan_pickle(path)
    assert r.format == "zip" and "no data.pkl" in r.problems[0]


def test_zip_bomb_data_pkl_is_read_up_to_the_cap(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02" + b"N0" * (40 << 20) + b"N.")  # 80 MiB of opcodes
    path = tmp_path / "bomb.pt"
    path.write_bytes(buf.getvalue())
    assert path.stat().st_size < 1 << 20
    start = time.perf_counter()
    r = scan_pickle(path)
    assert time.perf_counter() - start < 20
    text = "\n".join(r.problems)
    assert "only the first 64 MiB were scanned" in text
    assert "opcodes; counts are partial" in text


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_named_pt(tmp_path, seed):
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(4096))
    data = b"\xde\xad" + data  # neither "PK" nor PROTO
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    r = scan_pickle(path)
    assert r.format == "not-pickle"
    assert "not a torch zip archive or a pickle" in r.problems[0]
    assert r.tensors is None and r.parameters is None


@pytest.mark.parametrize(
    "name,data,fragment",
    [
        ("empty.pt", b"", "zero-byte file"),
        ("mindspore.ckpt", b"\n\x0fconv1.weight\x12\x08\n\x02\x03\x03\x12\x02\x00\x00", "not a torch zip"),
        ("weights.pt", st_bytes(header=GOOD), "not a torch zip"),
        ("text.bin", b"hello world\n", "not a torch zip"),
    ],
)
def test_not_pickles(tmp_path, name, data, fragment):
    path = tmp_path / name
    path.write_bytes(data)
    r = scan_pickle(path)
    assert r.format == "not-pickle" and fragment in r.problems[0]


HOSTILE_PICKLES = {
    "deep-marks": (b"\x80\x02" + b"(" * 200_000 + b".", "nested deeper than 100,000 MARKs"),
    "huge-unicode8": (b"\x80\x04\x8d" + struct.pack("<Q", 2**62) + b"abc.", "runs past the end"),
    "huge-bytes8": (b"\x80\x04\x8e" + struct.pack("<Q", 2**63 + 5) + b"abc.", "runs past the end"),
    "huge-long4": (b"\x80\x02\x8b" + struct.pack("<i", 2**31 - 1) + b"\x01.", "LONG4"),
    "missing-memo": (b"\x80\x02h\x07.", "memo key 7 missing"),
    "underflow": (b"\x80\x02R.", "stack underflow"),
    "no-stop": (b"\x80\x02}q\x00", "no STOP opcode"),
    "unknown-opcode": (b"\x80\x02\xff.", "unknown opcode"),
    "bad-utf8": (b"\x80\x02X\x02\x00\x00\x00\xc3\x28.", "UnicodeDecodeError"),
    "int-digits": (b"\x80\x02L" + b"9" * 5000 + b"L\n.", "LONG"),
    "stop-on-empty": (b"\x80\x02.", "STOP on an empty stack"),
    # a tensor whose "shape" is 300,000 huge dimensions: not counted, and not a quadratic product
    "huge-shape": (
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
        b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00("
        + b"\x8a\x08"
        + b"\xff" * 7
        + b"\x3f" * 1
        + (b"\x8a\x08" + b"\xff" * 7 + b"\x3f") * 299_999
        + b"t)\x89NtR.",
        "malformed shape",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE_PICKLES))
def test_hostile_pickles(tmp_path, case):
    data, fragment = HOSTILE_PICKLES[case]
    path = tmp_path / f"{case}.pkl"
    path.write_bytes(data)
    start = time.perf_counter()
    r = scan_pickle(path)
    assert time.perf_counter() - start < 5
    assert r.format == "legacy"
    assert any(fragment in p for p in r.problems), r.problems


def test_deeply_nested_containers_are_walked_without_recursion(tmp_path):
    n = 100_000
    lists = b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b"."
    path = tmp_path / "lists.pkl"
    path.write_bytes(lists)
    r = scan_pickle(path)
    assert r.format == "legacy" and r.problems == []
    # nested dicts {"k": {"k": ... {"w": tensor}}} with a tensor at the bottom
    tensor = torch_like_zip({"w": ("F32", [3])})
    inner = zipfile.ZipFile(io.BytesIO(tensor)).read("archive/data.pkl")[2:-1]  # the dict, no PROTO/STOP
    a = Asm(2)
    for _ in range(50_000):
        a.raw(b"}").str("k")
    a.raw(inner).raw(b"s" * 50_000)
    path = tmp_path / "dicts.pkl"
    path.write_bytes(a.stop())
    start = time.perf_counter()
    r = scan_pickle(path)
    assert time.perf_counter() - start < 10
    assert r.problems == [] and r.tensors == 1 and r.parameters == 3
    assert r.top_keys == ["k"] and len(r.entries[0]) < 500
    assert r.parameters_by_key == {"k": 3}


def test_legacy_magic_then_garbage(tmp_path):
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
    path = tmp_path / "old.bin"
    path.write_bytes(magic + b"\x80\x02}q\x00(X")
    r = scan_pickle(path)
    assert r.format == "legacy"
    assert any("legacy torch pickle is corrupt or truncated" in p for p in r.problems)
