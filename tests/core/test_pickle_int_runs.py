"""Runs of integer opcodes (BININT1, BININT2, BININT, LONG1), which the pickle machine replays a run at a
time (Machine._ints): the values, the opcode count, the budget and the errors of a cut-off run are
exactly those of replaying them one by one."""

from __future__ import annotations

import pickle
import pickletools
import random

import pytest

from tui.core.pickle_scan import machine as m
from tui.core.pickle_scan.machine import MAX_OPCODES, DictNode, Machine, ScanStop

INTS = [0, 1, 127, 128, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000, -1, -128, -(2**31), 2**31 - 1, 2**31,
        2**32 - 1, 2**32, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63), 2**64, 7**300, -(7**300), 2**2030, 2**2100]  # fmt: skip


def _replay(data: bytes) -> tuple[object, Machine]:
    machine = Machine()
    root, end = machine.run(data, 0)
    assert end == len(data)
    return root, machine


def _opcodes(data: bytes) -> int:
    return sum(1 for _ in pickletools.genops(data))


@pytest.mark.parametrize("proto", [2, 4])
def test_a_run_of_ints_of_every_size_replays_as_pickle_loads(proto):
    data = pickle.dumps(tuple(INTS), protocol=proto)
    names = {op.name for op, _, _ in pickletools.genops(data)}
    assert {"BININT1", "BININT2", "BININT", "LONG1", "LONG4"} <= names  # LONG4 (2**2100) breaks the run
    root, machine = _replay(data)
    assert root == pickle.loads(data) == tuple(INTS)
    assert machine.opcodes == _opcodes(data)


def test_hand_made_run_with_every_int_opcode():
    # LONG1 of 0 bytes (0), of 1, of 8 and of 9 bytes; BININT1/BININT2 with the high bit set (unsigned)
    body = (b"\x8a\x00" + b"\x8a\x01\xff" + b"\x8a\x08" + (2**62).to_bytes(8, "little")
            + b"\x8a\x09" + (-(2**70)).to_bytes(9, "little", signed=True) + b"K\xff" + b"M\xff\xff"
            + b"J\xff\xff\xff\xff" + b"J\x00\x00\x00\x80")  # fmt: skip
    data = b"\x80\x02(" + body + b"t."
    root, machine = _replay(data)
    assert root == pickle.loads(data) == (0, -1, 2**62, -(2**70), 255, 65535, -1, -(2**31))
    assert machine.opcodes == _opcodes(data)


@pytest.mark.parametrize("seed", range(5))
def test_mersenne_state_as_in_rng_state_pth(seed):
    state = random.Random(seed).getstate()
    data = pickle.dumps({"python": state}, protocol=2)
    root, machine = _replay(data)
    assert isinstance(root, DictNode) and root.pairs == [("python", state)]
    assert machine.opcodes == _opcodes(data)


def test_int_runs_as_dict_keys_and_values_and_in_nested_tuples():
    value = {1: 2**40, 2: -5, 3: (4, 2**31, (70000, -(2**63))), "lr": [0, 255, 2**32 - 1]}
    data = pickle.dumps(value, protocol=2)
    root, machine = _replay(data)
    assert isinstance(root, DictNode)
    assert root.pairs == list(value.items())
    assert machine.opcodes == _opcodes(data)
    assert not machine.markers and not machine.float_operands


# The errors of a run cut off inside an argument: the texts and flags of the one-by-one replay.
@pytest.mark.parametrize(
    ("data", "message", "opcodes"),
    [
        (b"\x80\x02(K", "BININT1 argument cut off", 3),
        (b"\x80\x02(K\x01M\x01", "BININT2 argument cut off", 4),
        (b"\x80\x02(K\x01J\x01\x02\x03", "BININT argument cut off", 4),
        (b"\x80\x02(J\x01\x02\x03\x04\x8a", "LONG1 length cut off", 4),
        (b"\x80\x02(\x8a\x05\x01\x02\x03", "LONG1 of 5 bytes runs past the end", 3),
        (b"\x80\x02(K\x01\x8a\x05\x01\x02\x03", "LONG1 of 5 bytes runs past the end", 4),
        (b"\x80\x02(K\x01K\x02", "no STOP opcode (truncated)", 4),
        (b"\x80\x02(K\x01K\x02\x8a\x01\xff", "no STOP opcode (truncated)", 5),
    ],
)
def test_a_cut_off_run_stops_as_before(data, message, opcodes):
    machine = Machine()
    with pytest.raises(ScanStop) as e:
        machine.run(data, 0)
    assert str(e.value) == message
    assert e.value.truncated and not e.value.limit
    assert machine.opcodes == opcodes


@pytest.mark.parametrize("left", range(7))
def test_the_opcode_budget_trips_at_the_same_opcode_inside_a_run(left):
    data = b"\x80\x02(" + b"K\x01M\x01\x02J\x01\x02\x03\x04\x8a\x01\x05" * 3 + b"t."  # 14 ints in a run
    machine = Machine()
    machine.opcodes = MAX_OPCODES - left  # as if earlier pickles of the file had spent the rest
    with pytest.raises(ScanStop) as e:
        machine.run(data, 0)  # PROTO, MARK, then the ints: the (left + 1)-th opcode trips
    assert str(e.value) == f"after {MAX_OPCODES:,} opcodes; counts are partial"
    assert e.value.limit and not e.value.truncated
    assert machine.opcodes == MAX_OPCODES + 1


def test_the_budget_is_spent_exactly_by_a_run_that_fits():
    data = pickle.dumps(tuple(range(1000, 1100)), protocol=2)
    machine = Machine()
    machine.opcodes = MAX_OPCODES - _opcodes(data)
    machine.run(data, 0)
    assert machine.opcodes == MAX_OPCODES
    machine.opcodes = MAX_OPCODES - _opcodes(data) + 1
    with pytest.raises(ScanStop, match="opcodes; counts are partial"):
        machine.run(data, 0)  # STOP is the one over
    assert machine.opcodes == MAX_OPCODES + 1


def test_the_budget_outranks_a_cut_off_argument():
    machine = Machine()
    machine.opcodes = MAX_OPCODES - 3
    with pytest.raises(ScanStop) as e:
        machine.run(b"\x80\x02(K\x01J\x01", 0)  # the cut-off BININT is the opcode over the budget
    assert e.value.limit and not e.value.truncated


def test_the_int_opcodes_are_the_four_replayed_as_runs():
    assert {pickletools.code2op[chr(c)].name for c in m._INT_CODES} == {
        "BININT1",
        "BININT2",
        "BININT",
        "LONG1",
    }


def test_a_run_longer_than_a_chunk_replays_whole():
    values = tuple(range(-5000, 5000)) + tuple(2**40 + n for n in range(3000))  # BININT, LONG1 chunks
    data = pickle.dumps(values, protocol=2)
    assert len(values) > 2 * m._RUN_CHUNK
    root, machine = _replay(data)
    assert root == values
    assert machine.opcodes == _opcodes(data)


def test_a_run_broken_by_a_long_long1_goes_on_after_it():
    # LONG1 of 9+ bytes is outside the regex: the one-by-one loop takes it and the rest of the run
    values = tuple(range(100)) + (2**80,) + tuple(range(2**33, 2**33 + 100))
    data = pickle.dumps(values, protocol=2)
    root, machine = _replay(data)
    assert root == values
    assert machine.opcodes == _opcodes(data)


@pytest.mark.parametrize("left", [m._RUN_CHUNK - 1, m._RUN_CHUNK + 3, m._RUN_CHUNK + 500])
def test_the_budget_trips_at_the_same_opcode_in_a_later_chunk(left):
    data = pickle.dumps(tuple(range(70000, 70000 + 3 * m._RUN_CHUNK)), protocol=2)
    machine = Machine()
    machine.opcodes = MAX_OPCODES - left - 2  # PROTO and MARK spend 2
    with pytest.raises(ScanStop) as e:
        machine.run(data, 0)
    assert e.value.limit and not e.value.truncated
    assert machine.opcodes == MAX_OPCODES + 1


def test_a_run_cut_off_after_many_whole_ints_stops_as_before():
    data = pickle.dumps(tuple(range(70000, 70100)), protocol=2)
    cut = data[: data.rindex(b"J") + 3]  # inside the last BININT's argument
    machine = Machine()
    with pytest.raises(ScanStop) as e:
        machine.run(cut, 0)
    assert str(e.value) == "BININT argument cut off" and e.value.truncated
    assert machine.opcodes == 2 + 100
