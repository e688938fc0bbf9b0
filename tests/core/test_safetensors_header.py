"""read_header against real files (safetensors.torch.save_file, cross-checked with safe_open) and hand-made
edge cases. Hostile headers live in test_hostile_files.py."""

from __future__ import annotations

import json
import os
import struct

import pytest

from tests.fixtures.readers import st_bytes, st_header
from tui.core.safetensors_header import DTYPE_BITS, HeaderError, read_header

try:
    import torch
    from safetensors import safe_open
    from safetensors import torch as safetensors_torch
except ImportError:  # the torch-free tests below still run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch + safetensors (the train extra)")

# torch dtype name -> safetensors dtype name
TORCH_TO_ST_NAMES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
    "complex64": "C64",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2fnuz": "F8_E5M2FNUZ",
    "float8_e8m0fnu": "F8_E8M0",
    "uint16": "U16",
    "uint32": "U32",
    "uint64": "U64",
}


def st_name(dtype) -> str:
    return TORCH_TO_ST_NAMES[str(dtype).removeprefix("torch.")]


def _mixed_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "embed.weight": torch.randn(50, 16, generator=g),
        "layer.0.weight": torch.randn(16, 16, generator=g).half(),
        "layer.0.bias": torch.randn(16, generator=g).bfloat16(),
        "positions": torch.arange(32, dtype=torch.int64),
        "mask": torch.ones(3, 5, dtype=torch.bool),
        "bytes": torch.zeros(7, dtype=torch.uint8),
        "scalar": torch.tensor(3.5, dtype=torch.float64),
        "empty": torch.zeros(0, 4),
        "f8": torch.zeros(6, dtype=torch.float8_e4m3fn),
        "i32": torch.ones(2, 3, dtype=torch.int32),
    }


@needs_torch
def test_matches_safe_open_on_save_file_output(tmp_path):
    tensors = _mixed_tensors()
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(tensors, str(path), metadata={"format": "pt", "note": "x"})

    header = read_header(path)

    assert header.problems == []
    assert header.metadata == {"format": "pt", "note": "x"}
    assert header.file_size == path.stat().st_size
    assert header.data_size == sum(t.nbytes for t in header.tensors.values())
    for framework in ("pt", "numpy"):
        with safe_open(str(path), framework=framework) as f:
            assert set(f.keys()) == set(header.tensors)
            if framework == "pt":
                for key in f.keys():
                    sl = f.get_slice(key)
                    assert list(header.tensors[key].shape) == list(sl.get_shape()), key
                    assert header.tensors[key].dtype == sl.get_dtype(), key
    for key, t in tensors.items():
        entry = header.tensors[key]
        assert entry.dtype == st_name(t.dtype)
        assert entry.shape == tuple(t.shape)
        assert entry.nbytes == t.numel() * t.element_size()
    truth: dict[str, int] = {}
    for t in tensors.values():
        truth[st_name(t.dtype)] = truth.get(st_name(t.dtype), 0) + t.numel()
    assert header.dtypes == truth
    assert header.parameters == sum(t.numel() for t in tensors.values())


@needs_torch
@pytest.mark.parametrize("dtype_name", list(TORCH_TO_ST_NAMES))
def test_every_dtype_torch_writes_has_the_right_item_size(tmp_path, dtype_name):
    dtype = getattr(torch, dtype_name, None)
    if dtype is None:
        pytest.skip(f"this torch has no {dtype_name}")
    t = torch.zeros(3, 4, dtype=dtype)
    path = tmp_path / "one.safetensors"
    try:
        safetensors_torch.save_file({"t": t}, str(path))
    except Exception as e:  # a dtype this safetensors build cannot write
        pytest.skip(f"safetensors cannot write {dtype}: {e}")
    entry = read_header(path).tensors["t"]
    assert entry.dtype == TORCH_TO_ST_NAMES[dtype_name]
    assert DTYPE_BITS[entry.dtype] == t.element_size() * 8
    assert entry.nbytes == entry.expected_nbytes == 12 * t.element_size()


@needs_torch
def test_knows_every_dtype_name_the_installed_safetensors_knows():
    import safetensors.numpy as st_np

    names = set(safetensors_torch._TYPES) | set(getattr(st_np, "_TYPES", {}))
    assert names <= set(DTYPE_BITS)
    assert {"F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ"} <= set(DTYPE_BITS)


def test_reads_only_the_header_bytes(tmp_path, monkeypatch):
    path = tmp_path / "big.safetensors"
    header = st_header({"w": ("F32", [1 << 20, 1024])})  # 4 GiB of data, as a sparse file
    head = st_bytes(header=header, data=b"")
    path.write_bytes(head)
    os.truncate(path, len(head) + (4 << 30))
    read_sizes: list[int] = []
    real_read = os.read

    def counting_read(fd, n):
        data = real_read(fd, n)
        read_sizes.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counting_read)
    result = read_header(path)
    assert result.problems == []
    assert result.tensors["w"].nbytes == 4 << 30
    assert sum(read_sizes) == len(head)


def test_sub_byte_dtypes_and_misalignment(tmp_path):
    ok = tmp_path / "f4.safetensors"
    ok.write_bytes(
        st_bytes(header={"a": {"dtype": "F4", "shape": [4, 2], "data_offsets": [0, 4]}}, data=bytes(4))
    )
    assert read_header(ok).problems == []
    odd = tmp_path / "f4odd.safetensors"
    odd.write_bytes(
        st_bytes(header={"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, data=bytes(2))
    )
    (problem,) = read_header(odd).problems
    assert "byte boundary" in problem


def test_size_mismatch_gap_trailing_bytes_and_bad_metadata(tmp_path):
    path = tmp_path / "x.safetensors"
    header = {
        "__metadata__": {"format": 1},
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]},  # 12 bytes for 2 x F32
        "b": {"dtype": "U8", "shape": [4], "data_offsets": [16, 20]},  # 4 bytes of gap before it
    }
    path.write_bytes(st_bytes(header=header, data=bytes(24)))  # 4 trailing bytes
    problems = read_header(path).problems
    text = "\n".join(problems)
    assert "__metadata__" in text
    assert "byte length != numel * itemsize" in text and "'a'" in text
    assert "non-contiguous" in text
    assert "4 trailing bytes" in text
    assert all("\n" not in p for p in problems)


def test_empty_header_object_is_a_valid_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(st_bytes(header=b"{}"))
    h = read_header(path)
    assert h.tensors == {} and h.problems == [] and h.parameters == 0


def test_header_limit_is_ours_to_choose(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(st_bytes({"a": ("F32", [2])}))
    with pytest.raises(HeaderError, match="exceeds the 16-byte limit"):
        read_header(path, max_header_bytes=16)


def test_error_messages_are_one_line_and_name_the_file(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(struct.pack("<Q", 3) + b"\xff\xfe\xfd")
    with pytest.raises(HeaderError) as info:
        read_header(path)
    msg = str(info.value)
    assert msg.startswith("weights.safetensors: ") and "\n" not in msg and "UTF-8" in msg


def test_duplicate_free_roundtrip_of_json_header(tmp_path):
    header = st_header({"a": ("BF16", [3, 3]), "b": ("I64", [2])}, metadata={"format": "pt"})
    path = tmp_path / "x.safetensors"
    path.write_bytes(st_bytes(header=header))
    h = read_header(path)
    for name, info in header.items():
        if name == "__metadata__":
            continue
        e = h.tensors[name]
        assert [e.start, e.end] == info["data_offsets"]
        assert list(e.shape) == info["shape"] and e.dtype == info["dtype"]
    assert json.loads(json.dumps(h.metadata)) == {"format": "pt"}


def test_identical_header_bytes_are_parsed_once_and_still_judged_per_file(tmp_path, monkeypatch):
    """Checkpoints of one model share their header: the analysis is remembered by (name, size, bytes),
    so a copy is not parsed again, while a truncated copy or another name still gets its own answer."""
    from tests.fixtures import synthetic as syn
    from tui.core import safetensors_header as sh
    from tui.core import weights

    head, data = syn.safetensors_bytes({"a.weight": ("F32", (4, 4)), "b.bias": ("F32", (4,))})
    raw = head + b"\0" * data
    for name in ("one", "two", "cut"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(raw)
    (tmp_path / "renamed.safetensors").write_bytes(raw)
    os.truncate(tmp_path / "cut" / "model.safetensors", len(raw) - 8)
    parsed = []
    real = sh._analyse
    monkeypatch.setattr(sh, "_analyse", lambda *a: parsed.append(a[1]) or real(*a))
    monkeypatch.setattr(sh, "_memo", type(sh._memo)())

    one, two = (read_header(tmp_path / n / "model.safetensors") for n in ("one", "two"))
    assert parsed == ["model.safetensors"]  # the second file's header came from memory
    assert one.entries is two.entries and one.problems == two.problems == []
    assert two.path == str(tmp_path / "two" / "model.safetensors")
    cut = read_header(tmp_path / "cut" / "model.safetensors")  # same bytes, another size: judged anew
    assert len(parsed) == 2 and any("truncated" in p for p in cut.problems)
    renamed = read_header(tmp_path / "renamed.safetensors")
    assert renamed.problems == [] and parsed[-1] == "renamed.safetensors"
    one.problems.append("mine")  # a caller's copy is its own
    assert read_header(tmp_path / "one" / "model.safetensors").problems == []
    a, b = (weights.summarize_weights(tmp_path / n) for n in ("one", "two"))
    assert a == b and a.parameters == 20 and a.modules == {"a": 16, "b": 4}
    a.modules["a"] = 0  # a summary's dicts are its own, not the shared derived ones
    assert weights.summarize_weights(tmp_path / "two").modules == {"a": 16, "b": 4}
    assert weights.summarize_weights(tmp_path / "cut").problems  # the truncation is reported


def test_headers_alike_at_both_ends_are_told_apart(tmp_path, monkeypatch):
    """The memory of headers is keyed by their ends; one that differs only in between (a middle tensor
    [2, 3] -> [3, 2], same bytes, same offsets) is analysed on its own, and each file keeps its answer."""
    from tests.fixtures import synthetic as syn
    from tui.core import safetensors_header as sh

    monkeypatch.setattr(sh, "_memo", type(sh._memo)())
    outer = {f"layer.{i:03d}.weight": ("F32", (4,)) for i in range(40)}
    files = {}
    for name, shape in (("a", (2, 3)), ("b", (3, 2))):
        tensors = dict(outer)
        tensors["layer.020.weight"] = ("F32", shape)  # the middle of the header, not its ends
        head, data = syn.safetensors_bytes(dict(sorted(tensors.items())))
        (tmp_path / name).mkdir()
        files[name] = tmp_path / name / "model.safetensors"
        files[name].write_bytes(head + b"\0" * data)
    raw_a, raw_b = (files[n].read_bytes() for n in "ab")
    assert len(raw_a) == len(raw_b) and raw_a != raw_b
    edge = sh._KEY_EDGE + 8
    assert raw_a[:edge] == raw_b[:edge] and raw_a[-data - sh._KEY_EDGE :] == raw_b[-data - sh._KEY_EDGE :]
    for _ in range(2):  # each in turn replaces the other's memory: always its own entries
        for name, shape in (("a", [2, 3]), ("b", [3, 2])):
            header = read_header(files[name])
            assert header.tensors["layer.020.weight"].shape == tuple(shape) and header.problems == []
