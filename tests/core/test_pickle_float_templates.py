"""Pickles that differ only in the values of their floats (an optimizer state saved at each checkpoint: its
learning rate) share one replay: the same report as a replay of their own, for a fraction of the cost.
A difference anywhere else, a Lightning checkpoint or a replay that stopped early never shares."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from tui.core.pickle_scan import formats
from tui.core.pickle_scan.machine import Machine


@pytest.fixture(autouse=True)
def fresh_shares():
    formats._SHARED.clear()
    formats._FLOATS.clear()
    yield
    formats._SHARED.clear()
    formats._FLOATS.clear()


@pytest.fixture
def replays(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = Machine._run

    def counting(self, data, pos):
        calls.append(len(data))
        return real(self, data, pos)

    monkeypatch.setattr(Machine, "_run", counting)
    return calls


def _fresh_report(path) -> dict:
    formats._SHARED.clear()
    formats._FLOATS.clear()
    return formats.scan_pickle(path).to_json()


def _zip(path, pkl: bytes) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", "3\n")
    path.write_bytes(buf.getvalue())


def _pickle(lr: float, global_line: bytes = b"builtins\nset\n", key: bytes = b"lr") -> bytes:
    """{key: lr, "g": <global>} in protocol 2, built opcode by opcode."""
    return (
        b"\x80\x02}(" + b"X" + struct.pack("<I", len(key)) + key + b"G" + struct.pack(">d", lr)
        + b"X\x01\x00\x00\x00g" + b"c" + global_line + b"u."
    )  # fmt: skip


def test_optimizer_states_of_later_steps_share_the_first_replay(tmp_path, replays):
    torch = pytest.importorskip("torch")
    params = [torch.nn.Parameter(torch.zeros(3, 2)) for _ in range(20)]
    opt = torch.optim.AdamW(params, lr=2e-5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / 100)
    paths = []
    for step in range(3):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
        paths.append(tmp_path / f"optimizer_{step}.pt")
        torch.save(opt.state_dict(), paths[-1])
    got = [formats.scan_pickle(p).to_json() for p in paths]
    assert len(replays) == 1  # the learning rate differs, nothing else in the pickle does
    assert got == [_fresh_report(p) for p in paths]
    assert got[0]["verdict"] == "clean" and got[0]["tensors"] == 60 and len(got[0]["tensor_table"]) == 60


def test_a_difference_outside_the_floats_is_replayed_and_judged_on_its_own(tmp_path, replays):
    _zip(tmp_path / "a.pt", _pickle(0.5))
    _zip(tmp_path / "b.pt", _pickle(0.25, b"posix\nsystem\n"))  # same length, another global
    a, b = formats.scan_pickle(tmp_path / "a.pt"), formats.scan_pickle(tmp_path / "b.pt")
    assert len(replays) == 2
    assert a.verdict == "clean" and b.verdict == "unsafe" and b.unsafe_globals == ["posix.system"]
    _zip(tmp_path / "c.pt", _pickle(0.125, key=b"lR"))  # a key's byte differs: not the same pickle
    assert formats.scan_pickle(tmp_path / "c.pt").top_keys == ["lR", "g"] and len(replays) == 3


def test_lightning_checkpoints_and_stopped_replays_are_never_templates(tmp_path, replays):
    _zip(tmp_path / "l1.ckpt", _pickle(0.5, key=b"loops"))  # a Lightning marker key
    _zip(tmp_path / "l2.ckpt", _pickle(0.25, key=b"loops"))
    formats.scan_pickle(tmp_path / "l1.ckpt")
    formats.scan_pickle(tmp_path / "l2.ckpt")
    assert len(replays) == 2
    cut = _pickle(0.5)[:-1]  # no STOP
    _zip(tmp_path / "t1.pt", cut)
    _zip(tmp_path / "t2.pt", _pickle(0.25)[:-1])
    assert formats.scan_pickle(tmp_path / "t1.pt").verdict == "not verified"
    assert formats.scan_pickle(tmp_path / "t2.pt").verdict == "not verified"
    assert len(replays) == 4


def test_the_templates_are_bounded(tmp_path):
    for n in range(formats.FloatTemplates.MAX + 5):
        _zip(tmp_path / f"{n}.pt", _pickle(0.5, key=b"k%03d" % n))
        formats.scan_pickle(tmp_path / f"{n}.pt")
    assert len(formats._FLOATS) == formats.FloatTemplates.MAX
