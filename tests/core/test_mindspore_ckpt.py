"""The MindSpore .ckpt reader on files written by hand in MindSpore's wire format (tests/fixtures/mindspore_files)."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest

from tests.fixtures.mindspore_files import (
    NET_PARAMETERS,
    NET_SHAPES,
    TRAINABLE,
    adam_checkpoint,
    array_value,
    bf16_value,
    ckpt_bytes,
    key,
    length_delimited,
    string_value,
    value_bytes,
    varint,
)
from tui.core.mindspore_ckpt import read_mindspore, sniff


def write(tmp_path, data: bytes, name: str = "m.ckpt"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_train_network_file_counts_network_and_optimizer_apart(tmp_path):
    path = write(tmp_path, ckpt_bytes(adam_checkpoint(seed=1, step=22450)))
    r = read_mindspore(path)
    assert r.format == "mindspore" and r.problems == [] and r.unsupported is None
    assert r.tensors == len(NET_SHAPES) and r.parameters == NET_PARAMETERS
    assert r.dtypes == {"F32": NET_PARAMETERS}
    assert r.tensor_table() == {n: ("F32", s) for n, s in NET_SHAPES.items()}
    trainable = sum(int(np.prod(NET_SHAPES[n])) for n in TRAINABLE)
    assert r.optimizer_tensors == 4 + 2 * len(TRAINABLE)
    assert r.optimizer_parameters == 4 + 2 * trainable  # global_step [1] and three scalars
    assert r.scalars["global_step"] == 22450 and r.scalars["learning_rate"] == pytest.approx(0.001)
    assert r.modules == {"fc1": 64 * 32 + 64, "bn": 4 * 64, "fc2": 7 * 64 + 7}
    assert r.largest[0] == {"name": "fc1.weight", "dtype": "F32", "shape": [64, 32], "parameters": 2048}
    assert r.bytes == 4 * NET_PARAMETERS


def test_slot_rule_and_known_optimizer_names(tmp_path):
    w = np.ones((2, 3), np.float32)
    values = [
        array_value("dense.weight", w),
        array_value("moments.dense.weight", w),  # Momentum
        array_value("accum.dense.weight", w),  # Adagrad
        array_value("vhat.other.weight", w),  # a known slot even without its parameter
        array_value("ema.dense.weight", w),  # <slot>.<name of another tensor>
        array_value("momentum", np.array(0.9, np.float32)),
        array_value("head.ema", w),  # not a slot: its rest is no tensor
    ]
    r = read_mindspore(write(tmp_path, ckpt_bytes(values)))
    roles = {t.name: t.role for t in r.entries}
    assert roles == {
        "dense.weight": "network",
        "moments.dense.weight": "optimizer",
        "accum.dense.weight": "optimizer",
        "vhat.other.weight": "optimizer",
        "ema.dense.weight": "optimizer",
        "momentum": "optimizer",
        "head.ema": "network",
    }


def test_dtypes_scalars_strings_and_packed_dims(tmp_path):
    values = [
        bf16_value("w_bf16", np.full((2, 3), 1.5, np.float32)),
        array_value("i8", np.arange(4, dtype=np.int8)),
        array_value("flag", np.array([True, False])),
        array_value("f16", np.zeros(3, np.float16)),
        array_value("u64", np.zeros(2, np.uint64)),
        array_value("epoch_num", np.array(47, np.int64)),
        array_value("step_num", np.array(21103, np.int64)),
        ("scalar_zero_dims", "Float32", [0], np.float32(2.0).tobytes()),  # MindSpore reads [0] as a scalar
        string_value("note", "héllo"),
    ]
    r = read_mindspore(write(tmp_path, ckpt_bytes(values, packed=True)))
    assert r.problems == []
    assert r.dtypes == {"BF16": 6, "I8": 4, "F16": 3, "BOOL": 2, "U64": 2, "F32": 1}
    assert r.tensor_table()["scalar_zero_dims"] == ("F32", ())
    assert r.scalars == {"epoch_num": 47, "step_num": 21103}
    assert r.strings == {"note": "héllo"}
    assert "note" not in {t.name for t in r.entries}


def test_sliced_tensor_is_joined_like_mindspores_loader(tmp_path):
    big = np.arange(1000, dtype=np.float32)
    raw = big.tobytes()
    values = [
        ("emb", "Float32", [1000], raw[:1600]),
        ("emb", "Float32", [1000], raw[1600:]),
        array_value("b", big[:3]),
    ]
    r = read_mindspore(write(tmp_path, ckpt_bytes(values)))
    assert r.problems == []
    emb = r.entries[0]
    assert emb.nbytes == 4000 and len(emb.slices) == 2 and r.parameters == 1003


@pytest.mark.parametrize("cut_from_end", [1, 100, 4000, 8100])
def test_truncated_inside_a_value_names_it_and_its_byte_offset(tmp_path, cut_from_end):
    data = ckpt_bytes(adam_checkpoint(seed=2, step=5))
    r = read_mindspore(write(tmp_path, data[: len(data) - cut_from_end]))
    truncated = [p for p in r.problems if "truncated" in p]
    assert len(truncated) == 1, r.problems
    assert "m.ckpt: truncated: value #" in truncated[0] and "at byte " in truncated[0]
    assert "runs past the end of the file" in truncated[0] or "ends early" in truncated[0]


def test_truncated_file_reports_the_value_and_keeps_what_is_intact(tmp_path):
    values = [
        array_value(n, a) for n, a in {"a": np.ones(10, np.float32), "b": np.ones(300, np.float32)}.items()
    ]
    data = ckpt_bytes(values)
    first = len(value_bytes(*values[0]))
    r = read_mindspore(write(tmp_path, data[: first + 50]))
    assert r.problems == [
        f"m.ckpt: truncated: value #2 ('b') at byte {first} runs past the end of the file "
        f"(needs {len(data) - first:,} bytes, 50 remain); the 1 values before it are intact"
    ]
    assert [t.name for t in r.entries] == ["a"] and r.parameters == 10


def test_cut_inside_a_field_header(tmp_path):
    data = ckpt_bytes([array_value("a", np.ones(200, np.float32))])
    r = read_mindspore(write(tmp_path, data[:2] + b""))  # the key and one byte of the length varint
    assert len(r.problems) == 1 and "truncated" in r.problems[0], r.problems


@pytest.mark.parametrize("delta", [-4, +4])
def test_wrong_tensor_size_inside_an_intact_file(tmp_path, delta):
    content = np.ones(10, np.float32).tobytes()
    content = content[:delta] if delta < 0 else content + b"\0" * delta
    values = [("w", "Float32", [10], content), array_value("b", np.ones(2, np.float32))]
    r = read_mindspore(write(tmp_path, ckpt_bytes(values)))
    how = "cut short" if delta < 0 else "longer than its dims"
    assert r.problems == [f"m.ckpt: tensor 'w' (F32 [10]) at byte 0 holds {40 + delta} of 40 bytes: {how}"]


@pytest.mark.parametrize(
    ("dims", "why"),
    [
        ([1 << 40, 1 << 40], "overflow int64 numel"),
        ([-3, 4], "negative dims [-3, 4]"),
        ([1] * 70, "more than 64 dims"),
    ],
)
def test_unusable_dims_are_a_problem_and_not_counted(tmp_path, dims, why):
    values = [("huge", "Float32", dims, b"\0" * 16), array_value("ok", np.ones(3, np.float32))]
    r = read_mindspore(write(tmp_path, ckpt_bytes(values)))
    assert any(why in p and "'huge'" in p for p in r.problems), r.problems
    assert r.parameters == 3 and r.tensors == 2


def test_unknown_tensor_type(tmp_path):
    values = [("q", "Complex512", [2], b"\0" * 8), array_value("ok", np.ones(3, np.float32))]
    r = read_mindspore(write(tmp_path, ckpt_bytes(values)))
    assert r.problems == [
        "m.ckpt: 1 tensor(s) of unknown tensor_type 'Complex512' (MindSpore cannot load them)"
    ]
    assert r.dtypes == {"Complex512": 2, "F32": 3}


def test_encrypted_file_is_unsupported_not_broken(tmp_path):
    # What save_checkpoint(enc_key=...) writes: the cipher magic, then AES blocks.
    path = write(tmp_path, b"\xd8\x5e\x3a\x7f" + os.urandom(200))
    assert sniff(path.read_bytes()[:16]) == "encrypted"
    r = read_mindspore(path)
    assert r.format == "encrypted" and r.problems == [] and r.tensors is None
    assert r.unsupported.startswith("encrypted MindSpore checkpoint")


def test_unknown_fields_are_skipped_and_said(tmp_path):
    extra = key(7, 0) + varint(3) + length_delimited(9, b"future")  # a newer top-level message kind
    data = ckpt_bytes([array_value("w", np.ones(4, np.float32))]) + extra
    r = read_mindspore(write(tmp_path, data))
    assert r.problems == [] and r.parameters == 4
    assert "field 7 of the checkpoint" in r.unsupported and "newer MindSpore format" in r.unsupported


def test_not_protobuf_at_all(tmp_path):
    r = read_mindspore(write(tmp_path, b"\x0f\xff\xff garbage"))
    assert r.format == "not-mindspore"
    assert r.problems[0].startswith("m.ckpt: not a MindSpore checkpoint")


def test_corrupt_bytes_after_intact_values(tmp_path):
    data = ckpt_bytes([array_value("w", np.ones(4, np.float32))]) + b"\x0f\x0f\x0f"
    r = read_mindspore(write(tmp_path, data))
    assert len(r.problems) == 1 and "corrupt: value #2 at byte" in r.problems[0]


def test_crc_trailer_parsed_and_verified_on_demand(tmp_path):
    data = ckpt_bytes([array_value("w", np.arange(8, dtype=np.float32))], crc=True)
    path = write(tmp_path, data)
    r = read_mindspore(path)
    assert r.problems == [] and r.crc is not None and r.crc_ok is None and r.parameters == 8
    assert read_mindspore(path, verify_crc=True).crc_ok is True
    damaged = bytearray(data)
    damaged[-20] ^= 0xFF  # a byte of tensor_content
    path.write_bytes(bytes(damaged))
    r = read_mindspore(path, verify_crc=True)
    assert r.crc_ok is False and r.problems == [
        "m.ckpt: CRC32 does not match the stored crc_num: the file is damaged"
    ]


def test_tag_written_twice_apart_counts_the_later_one(tmp_path):
    values = [
        array_value("w", np.ones(4, np.float32)),
        array_value("b", np.ones(1, np.float32)),
        array_value("w", np.ones(6, np.float32)),
    ]
    r = read_mindspore(write(tmp_path, ckpt_bytes(values)))
    assert any("'w' is written twice" in p for p in r.problems)
    assert r.tensor_table() == {"b": ("F32", (1,)), "w": ("F32", (6,))} and r.parameters == 7


def test_hostile_names_never_reach_problems_raw(tmp_path):
    values = [("evil\x1b]0;pwned\x07", "Float32", [4], b"\0" * 3)]
    r = read_mindspore(write(tmp_path, ckpt_bytes(values)))
    assert r.problems and all("\x1b" not in p and "\x07" not in p for p in r.problems)


def test_missing_type_or_content(tmp_path):
    body = length_delimited(1, b"w") + length_delimited(
        2, key(1, 0) + varint(2) + length_delimited(2, b"Float32")
    )
    r = read_mindspore(write(tmp_path, length_delimited(1, body)))
    assert r.problems == ["m.ckpt: value 'w' at byte 0 has no tensor_content"]


def test_zero_byte_fifo_and_missing(tmp_path):
    assert read_mindspore(write(tmp_path, b"")).problems == ["m.ckpt: zero-byte file"]
    os.mkfifo(tmp_path / "pipe.ckpt")
    assert read_mindspore(tmp_path / "pipe.ckpt").problems == ["pipe.ckpt: not a regular file"]
    assert "cannot open" in read_mindspore(tmp_path / "gone.ckpt").problems[0]


def test_sniff():
    assert sniff(ckpt_bytes([array_value("w", np.ones(4, np.float32))])[:16]) == "mindspore"
    assert sniff(b"\x80\x02}q\x00") is None  # a pickle
    assert sniff(b"PK\x03\x04") is None  # a torch zip
    assert sniff(b"\x0a\x05hello") is None  # field 1, but not a Value (no tag first)
    assert sniff(b"") is None


def test_tensor_content_is_skipped_not_read(tmp_path):
    """A 2 GiB tensor (a sparse file) is described from its header bytes: memory stays small."""
    header = length_delimited(1, b"big") + key(2, 2)
    content_len = 2 << 30
    tensor_head = (
        key(1, 0)
        + varint(content_len // 4)
        + length_delimited(2, b"Float32")
        + key(3, 2)
        + varint(content_len)
    )
    tensor_len = len(tensor_head) + content_len
    value = header + varint(tensor_len) + tensor_head
    value_len = len(value) + content_len
    path = tmp_path / "big.ckpt"
    with open(path, "wb") as f:
        f.write(key(1, 2) + varint(value_len) + value)
        f.truncate(f.tell() + content_len)
    tracemalloc.start()
    r = read_mindspore(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert r.problems == [] and r.parameters == content_len // 4
    assert peak < 4 << 20, peak
