"""files.loads_json / dumps_json: json.loads and json.dumps exactly (values, types, errors) though orjson does what it can."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tui.core import files
from tui.core.files import dumps_json, load_json, loads_json

REPO = Path(__file__).resolve().parents[2]
CASES = [
    b'{"a": 1, "b": [1.5, -0.0, 1e-400, "x"], "c": null, "d": true}',
    b'{"step": 18446744073709551615}',
    b'{"step": 18446744073709551616}',  # orjson: a float; json: an int
    b'{"step": -9223372036854775809, "s": "123456789012345678901234"}',
    b'{"v": NaN, "w": Infinity, "x": -Infinity}',
    b'{"v": 1e400}',
    b'{"s": "\\ud800"}',  # a lone surrogate
    b'\xef\xbb\xbf{"bom": 1}',
    '{"utf16": 1}'.encode("utf-16"),
    b'{"a": 1, "a": 2}',
    b"[" * 3000 + b"]" * 3000,
    b'{"a": 9007199254740993.0, "b": 0.30000000000000004}',
]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b and repr(a) == repr(b)


@pytest.fixture(params=["orjson", "json"])
def parser(request, monkeypatch):
    """orjson from the first byte, or the standard library alone (a small parse, before the import pays)."""
    if request.param == "orjson":
        monkeypatch.setattr(files, "orjson", files.orjson)  # undone after the test, as the threshold is
        monkeypatch.setattr(files, "ORJSON_AFTER_BYTES", 0)
        assert files.fast_json(1) is not None
    else:
        monkeypatch.setattr(files, "orjson", None)
    return request.param


@pytest.mark.parametrize("raw", CASES)
def test_same_values_and_types_as_json(raw, parser):
    try:
        want = json.loads(raw)
    except (ValueError, RecursionError) as e:
        with pytest.raises(type(e)):
            loads_json(raw)
        return
    assert _same(loads_json(raw), want)


STRING_CASES = [
    *CASES,
    b'{"metadata": {"total_size": 18446744073709551616}, "weight_map": {"a.weight": "model-1.safetensors"}}',
    b'{"weight_map": {"a": "s"}, "n": [[[-9223372036854775809]]]}',
    b'{"weight_map": {"a": "s"}, "f": 1e19, "g": [9.3e18, -9.3e18, 2.5]}',
    b'{"weight_map": {"a": "12345678901234567890123"}, "total_size": 9223372036854775807}',
]


@pytest.mark.parametrize("raw", STRING_CASES)
def test_loads_json_of_strings_is_json_loads_too(raw, parser):
    # the shard index's parse: orjson's floats of magnitude >= 2**63 send it to the standard library
    try:
        want = json.loads(raw)
    except (ValueError, RecursionError) as e:
        with pytest.raises(type(e)):
            files.loads_json_of_strings(raw)
        return
    assert _same(files.loads_json_of_strings(raw), want)


@pytest.mark.parametrize("raw", [b'{"a": 1,}', b"{", b'{"a": 01}', b"\x00", b'{"a": "\xff"}'])
def test_the_standard_library_words_every_error(tmp_path, raw, parser):
    path = tmp_path / "trainer_state.json"
    path.write_bytes(raw)
    try:
        json.loads(raw)
    except ValueError as e:
        want = f"trainer_state.json: invalid JSON ({str(e).splitlines()[0]}"
    data, problem = load_json(path)
    assert data is None and problem.startswith(want)


def test_works_without_orjson(monkeypatch):
    monkeypatch.setattr(files, "orjson", None)
    assert loads_json(b'{"step": 18446744073709551616}') == {"step": 18446744073709551616}


class _Str(str):
    pass


VALUES = [
    ({"a": 1, "b": [1.5, -0.0, 1e-05, 1.5e-07, 1e22, "x"], "c": None, "d": True}, None),
    ([float("nan"), 1.0], None),  # orjson writes null for NaN and the infinities
    ({"w": float("inf"), "x": -float("inf")}, None),
    ({"s": "h\u00e9llo \u202e"}, None),  # not ASCII
    ({"s": "ck\udcffpt"}, None),  # a lone surrogate (a surrogateescape'd name)
    ({"n": 2**64, "m": -(2**63) - 1, "k": 2**64 - 1}, None),
    ({1: "int key", None: "none key", False: "bool key", 2.5: "float key"}, None),
    (({"a": 1}, ["problem"]), None),  # the (summary, problems) pairs the readers cache
    ({"shape": (1, 2), "t": ((1,), [])}, None),
    ({"k": _Str("sub"), _Str("key"): 1}, None),
    ({"tab": "a\tb\nc", "ctl": "\x00\x1f"}, None),
    ({"obj": object()}, TypeError),
    ({"deep": [[[[]]]] * 3}, None),
]


@pytest.mark.parametrize(("value", "error"), VALUES)
def test_dumps_parses_back_to_what_json_dumps_gives(value, error, parser):
    if error is not None:
        with pytest.raises(error):
            json.dumps(value, separators=(",", ":"))
        with pytest.raises(error):
            dumps_json(value)
        return
    text = dumps_json(value)
    assert text.isascii() and "\n" not in text and "\t" not in text  # one line of a cache file
    want = json.loads(json.dumps(value, separators=(",", ":")))
    assert _same(json.loads(text), want)
    assert _same(loads_json(text.encode("utf-8", "surrogatepass")), want)


def test_dumps_takes_orjson_only_when_it_round_trips(monkeypatch):
    """A value orjson writes faithfully takes its text (the fast path is used at all); NaN does not."""
    monkeypatch.setattr(files, "orjson", files.orjson)  # undone after the test, as the threshold is
    monkeypatch.setattr(files, "ORJSON_AFTER_BYTES", 0)
    if files.fast_json(0) is None:
        pytest.skip("no orjson")
    assert dumps_json({"a": [1e-05, None]}) == files.orjson.dumps({"a": [1e-05, None]}).decode()
    assert dumps_json([float("nan")]) == "[NaN]"
    monkeypatch.setattr(files, "orjson", None)
    assert dumps_json([float("nan"), 1e-05]) == json.dumps([float("nan"), 1e-05], separators=(",", ":"))


def test_orjson_is_imported_only_once_enough_json_was_parsed():
    # importing orjson costs ~10 ms: a command that parses a few small files must not pay it
    probe = (
        "import sys\nfrom tui.core import files\n"
        "files.loads_json(b'{\"a\": 1}')\nprint('orjson' in sys.modules)\n"
        "files.loads_json(b'[' + b'1,' * (files.ORJSON_AFTER_BYTES // 2) + b'1]')\nprint('orjson' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False", "True"]
