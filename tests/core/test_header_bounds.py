"""Bounded work on hostile safetensors headers: tensors per header, JSON values, name length, memory
across shards (one shard summarised at a time), and one parse per command. The memory checks run the
reader in a child process whose address space is capped, so a reader that holds too much fails there."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fixtures import synthetic as syn
from tests.fixtures.readers import st_bytes, st_header
from tui.core import inspect as inspect_mod
from tui.core import safetensors_header as sh
from tui.core.safetensors_header import MAX_NAME_CHARS, MAX_TENSORS, HeaderError, read_header

REPO = Path(__file__).resolve().parents[2]
CAP_MB = 500  # the per-command peak memory budget


def _many_tensors(n: int, name: str = "t") -> bytes:
    """A valid header of ``n`` one-byte U8 tensors, written without building a dict of n entries."""
    parts = [f'"{name}.{i}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{i + 1}]}}' for i in range(n)]
    return ("{" + ",".join(parts) + "}").encode()


def _write(path: Path, header: bytes, data_len: int) -> Path:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + data_len)
    return path


def _run_capped(code: str, *args: str) -> subprocess.CompletedProcess:
    """``code`` in a child whose address space is capped at CAP_MB (a MemoryError there fails the test)."""
    prelude = textwrap.dedent(
        f"""
        import resource, sys
        sys.path.insert(0, {str(REPO)!r})
        import tui.core.weights, tui.core.safetensors_header  # imports count, before the cap
        cap = {CAP_MB} << 20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *args], capture_output=True, text=True, timeout=120
    )


def test_more_tensors_than_the_limit_is_a_one_line_error(tmp_path):
    path = _write(tmp_path / "many.safetensors", _many_tensors(MAX_TENSORS + 5), MAX_TENSORS + 5)
    with pytest.raises(HeaderError) as info:
        read_header(path)
    assert f"limit of {MAX_TENSORS} tensors" in str(info.value) and "\n" not in str(info.value)


def test_the_limit_itself_is_accepted(tmp_path):
    n = 20_000
    path = _write(tmp_path / "ok.safetensors", _many_tensors(n), n)
    h = read_header(path)
    assert h.problems == [] and len(h.entries) == n and h.parameters == n


def test_too_many_json_values_is_refused_before_parsing(tmp_path):
    # one tensor whose shape lists 3 million zeros: few objects, millions of values
    header = b'{"t":{"dtype":"U8","shape":[' + b"0," * 3_000_000 + b'0],"data_offsets":[0,0]}}'
    path = _write(tmp_path / "wide.safetensors", header, 0)
    with pytest.raises(HeaderError, match="JSON values"):
        read_header(path)


def test_a_tensor_name_over_the_limit_is_an_error(tmp_path):
    long = "a." * 1_000_000  # a million dotted parts
    path = tmp_path / "long.safetensors"
    path.write_bytes(st_bytes(header=st_header({long: ("U8", [1])}), data=b"\0"))
    with pytest.raises(HeaderError) as info:
        read_header(path)
    msg = str(info.value)
    assert f"exceeds the {MAX_NAME_CHARS}-character limit" in msg and len(msg) < 300
    ok = tmp_path / "ok.safetensors"
    ok.write_bytes(st_bytes(header=st_header({"a" * MAX_NAME_CHARS: ("U8", [1])}), data=b"\0"))
    assert read_header(ok).problems == []


def test_a_100_mib_header_of_a_million_tensors_stays_under_the_memory_cap(tmp_path):
    path = _write(tmp_path / "huge.safetensors", _many_tensors(1_300_000, "w"), 1_300_000)
    assert os.path.getsize(path) > 50 << 20
    out = _run_capped(
        """
        from tui.core.weights import summarize_weights
        s = summarize_weights([sys.argv[1]])
        print(s.problems[0])
        """,
        str(path),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "tensors per file" in out.stdout


def test_shards_are_summarised_one_at_a_time(tmp_path):
    # 12 hard links of one 7 MiB header: all held at once, their tensors take far more than the cap
    header = _many_tensors(70_000, "model.layers.0.mlp.experts.0.w")
    first = _write(tmp_path / "model-00001-of-00012.safetensors", header, 70_000)
    for i in range(2, 13):
        os.link(first, tmp_path / f"model-{i:05d}-of-00012.safetensors")
    out = _run_capped(
        """
        from tui.core.weights import summarize_weights
        s = summarize_weights(sys.argv[1])
        print(s.tensors, s.shards)
        print(s.problems[-1])
        """,
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    tensors, shards = out.stdout.split("\n")[0].split()
    assert (int(tensors), int(shards)) == (70_000, 12)
    assert "stored in two shards" in out.stdout and "more" in out.stdout


def test_inspect_parses_each_header_once(tmp_path, monkeypatch):
    folder = tmp_path / "m"
    syn.write_hf_model(folder)
    calls: list[str] = []
    real = sh.read_header

    def counting(path, **kw):
        calls.append(os.fspath(path))
        return real(path, **kw)

    monkeypatch.setattr("tui.core.weights.read_header", counting)
    result = inspect_mod.inspect_path(tmp_path, folder)
    assert result.weights is not None and result.weights.tensors > 0
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 1


@pytest.mark.parametrize("orjson_after", [0, None])  # orjson from the first byte; the default (json)
def test_orjson_and_json_agree_on_what_they_accept(tmp_path, monkeypatch, orjson_after):
    # integers past 64 bits become floats in orjson: the header path must still report them as json does
    if orjson_after is not None:
        from tui.core import files

        monkeypatch.setattr(files, "orjson", files.orjson)  # undone after the test, as the threshold is
        monkeypatch.setattr(files, "ORJSON_AFTER_BYTES", orjson_after)
    for header, fragment in (
        ({"t": {"dtype": "U8", "shape": [2**64], "data_offsets": [0, 0]}}, "overflows u64"),
        ({"t": {"dtype": "U8", "shape": [1], "data_offsets": [0, 2**64]}}, "two non-negative integers"),
    ):
        path = tmp_path / "x.safetensors"
        path.write_bytes(st_bytes(header=json.dumps(header).encode()))
        with pytest.raises(HeaderError, match=fragment):
            read_header(path)


ODD_VALUES = [None, True, 1, -1, 2**64, 1.5, "F32", "ab", "xyz", [], [1], [0, 4], [0, 4, 8], [-1, 2], ["0", "4"],
              [True, 4], {"a": 1}, {"a": 1, "b": 2}, [2**64, 2**64 + 1], [[1]]]  # fmt: skip


@pytest.mark.parametrize("field", ["dtype", "shape", "data_offsets", None])
def test_the_fast_pass_accepts_only_what_the_per_entry_path_accepts_alike(field):
    # whatever the one tight pass accepts, the per-entry path accepts with the same tuple; anything
    # else it hands over (None) and the per-entry path words the problem
    from tui.core.safetensors_header import _entry, _fast_entries

    for value in ODD_VALUES:
        info = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
        if field is None:
            info = value
        else:
            info[field] = value
        fast = _fast_entries({"__metadata__": {"format": "pt"}, "t": info})
        try:
            slow = [_entry("x", "t", info)]
        except HeaderError:
            slow = None
        assert fast is None or fast == slow, (field, value)
