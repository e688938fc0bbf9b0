"""MindSpore checkpoints in the scan, inspect, sort, prune and diff: the 50-epoch directory of the issue."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tests.fixtures.mindspore_files import (
    NET_PARAMETERS,
    array_value,
    ckpt_bytes,
    network,
    value_bytes,
    write_50_epoch_dir,
)
from tui.app import rows
from tui.core.actions import plan_prune
from tui.core.diff import tensor_table_of as tensor_table
from tui.core.inspect import inspect_path
from tui.core.mindspore_ckpt import MindSporeReport
from tui.core.mindspore_ckpt.runs import run_note
from tui.core.model import run_of
from tui.core.scan import describe, scan


def by_path(root: Path) -> dict:
    return {i.path: i for i in scan(root)}


def test_fifty_epoch_directory(tmp_path):
    paths = write_50_epoch_dir(tmp_path)
    got = by_path(tmp_path)
    assert {i.kind for i in got.values()} == {"mindspore"}
    for epoch in range(46, 51):
        info = got[f"checkpoints_50epoch/fer-{epoch}_449.ckpt"]
        assert (info.epoch, info.epoch_step, info.step) == (
            epoch,
            449,
            epoch * 449,
        )  # global_step in the file
        assert info.complete and info.parameters == NET_PARAMETERS and info.dtypes == {"F32": NET_PARAMETERS}
        assert run_of(info) == "checkpoints_50epoch/fer-*"
    second = got["checkpoints_50epoch/fer_1-2_449.ckpt"]
    assert run_of(second) == "checkpoints_50epoch/fer_1-*" and (second.epoch, second.step) == (2, 898)
    best = got["checkpoints_50epoch/best_model.ckpt"]
    assert best.best and best.complete and best.step is None and run_of(best) == "checkpoints_50epoch"
    assert not got["checkpoints_50epoch/final_model.ckpt"].best
    cut = got["checkpoints_50epoch_copy/best_model.ckpt"]
    assert not cut.complete and not cut.best  # a broken best model may be deleted
    assert cut.problems[0].startswith("best_model.ckpt: truncated: value #")
    assert paths["truncated_best"].stat().st_size < paths["best"].stat().st_size


def test_cut_on_a_value_boundary_is_caught_by_the_siblings(tmp_path):
    net = network(3)
    values = [array_value(n, a) for n, a in net.items()]
    full = ckpt_bytes(values)
    (tmp_path / "fer-1_10.ckpt").write_bytes(full)
    keep = sum(len(value_bytes(*v)) for v in values[:5])
    (tmp_path / "best_model.ckpt").write_bytes(full[:keep])  # a valid file: 5 whole values
    info = by_path(tmp_path)["best_model.ckpt"]
    assert not info.complete and not info.best
    assert info.problems == [
        f"best_model.ckpt: holds 5 of the 8 network tensors of its siblings (e.g. fer-1_10.ckpt; {keep:,} vs "
        f"{len(full):,} bytes), missing 'bn.moving_variance', 'fc2.bias', 'fc2.weight': an incomplete save"
    ]
    assert describe(tmp_path, tmp_path / "best_model.ckpt").problems == info.problems
    # another model beside it (disjoint names) is not compared
    (tmp_path / "other.ckpt").write_bytes(ckpt_bytes([array_value("head.w", np.ones(3, np.float32))]))
    assert by_path(tmp_path)["other.ckpt"].complete


def test_epoch_order_without_a_global_step(tmp_path):
    """fer-5 / fer-46 / fer-50 hold only the network: (epoch, step in epoch) orders them, not the name."""
    for epoch in (5, 46, 50):
        (tmp_path / f"fer-{epoch}_449.ckpt").write_bytes(
            ckpt_bytes([array_value(n, a) for n, a in network(epoch).items()])
        )
    infos = scan(tmp_path)
    assert all(i.step is None and i.epoch_step == 449 for i in infos)
    ordered = sorted(infos, key=rows.sort_key("step"))
    assert [i.path for i in ordered] == ["fer-5_449.ckpt", "fer-46_449.ckpt", "fer-50_449.ckpt"]
    assert [rows.step_text(i) for i in ordered] == ["e5:449", "e46:449", "e50:449"]
    plan = plan_prune(tmp_path, infos, keep=1, metric="loss", clock=lambda: 4e9)
    kept = {r.path: r.reason for r in plan.kept}
    assert kept["fer-50_449.ckpt"] == "latest of its run"
    assert kept["fer-5_449.ckpt"].startswith("no loss value")


def test_encrypted_file_is_unsupported_not_broken(tmp_path):
    (tmp_path / "fer-3_10.ckpt").write_bytes(b"\xd8\x5e\x3a\x7f" + os.urandom(300))
    info = by_path(tmp_path)["fer-3_10.ckpt"]
    assert info.kind == "mindspore" and info.complete and info.problems == []
    assert info.unsupported.startswith("encrypted MindSpore checkpoint") and info.parameters is None
    assert (info.epoch, info.epoch_step) == (3, 10)
    assert rows.status_of(info) == "unsupported"


def test_inspect_and_diff(tmp_path):
    paths = write_50_epoch_dir(tmp_path)
    result = inspect_path(tmp_path, paths["fer-50"])
    assert isinstance(result.weights, MindSporeReport)
    data = result.to_json()
    assert data["kind"] == "mindspore" and data["weights"]["optimizer_tensors"] == 16
    assert data["weights"]["scalars"]["global_step"] == 50 * 449
    table = tensor_table(paths["fer-50"])
    assert table == tensor_table(paths["best"]) and len(table) == 8
    assert table["fc1.weight"] == ("F32", (64, 32))


def test_inspect_verify_checks_the_crc(tmp_path):
    data = bytearray(ckpt_bytes([array_value("w", np.arange(64, dtype=np.float32))], crc=True))
    path = tmp_path / "m.ckpt"
    path.write_bytes(bytes(data))
    assert inspect_path(tmp_path, path, verify_hashes=True).info.problems == []
    data[-30] ^= 1
    path.write_bytes(bytes(data))
    assert inspect_path(tmp_path, path).info.problems == []  # ls / inspect do not read every byte
    assert inspect_path(tmp_path, path, verify_hashes=True).info.problems == [
        "m.ckpt: CRC32 does not match the stored crc_num: the file is damaged"
    ]


def test_run_notes():
    names = [f"fer-{e}_449.ckpt" for e in range(46, 51)]
    note = run_note(names, [*names, "fer_1-1_449.ckpt"])
    assert note == (
        "only epochs 46-50 remain (5 files): ModelCheckpoint keeps the newest keep_checkpoint_max files "
        "(5 by default) and deletes older ones itself"
    )
    rerun = run_note(["fer_1-1_449.ckpt", "fer_1-2_449.ckpt"], [*names, "fer_1-1_449.ckpt"])
    assert rerun.startswith(
        "a later run than fer-*: MindSpore's ModelCheckpoint renames the prefix 'fer' to 'fer_1'"
    )
    assert run_note(["resnet_50-1_10.ckpt"], ["resnet_50-1_10.ckpt"]) is None  # an underscore, no rerun
    assert run_note(["best_model.ckpt"], []) is None


def test_a_repeat_scan_reads_no_mindspore_file_until_one_changes(tmp_path, monkeypatch):
    from tui.core import cache
    from tui.core.mindspore_ckpt import wire

    monkeypatch.setattr(cache, "RACY_SECONDS", -1.0)  # files written a moment ago may be cached
    reads: list[str] = []
    real = wire.read_mindspore  # the scan's reader imports it when a MindSpore file is met
    monkeypatch.setattr(
        wire, "read_mindspore", lambda p, **kw: reads.append(os.path.basename(p)) or real(p, **kw)
    )
    paths = write_50_epoch_dir(tmp_path)

    def fresh_scan():
        cache.shared().flush()
        cache.configure()  # a new command: the cache files read back from disk
        return [i.to_json() for i in scan(tmp_path)]

    first = fresh_scan()
    assert len(reads) == 12
    reads.clear()
    assert fresh_scan() == first and reads == []
    os.chmod(paths["fer-48"], 0o644)
    os.truncate(paths["fer-48"], paths["fer-48"].stat().st_size - 10)
    again = {i["path"]: i for i in fresh_scan()}
    assert reads == ["fer-48_449.ckpt"]
    assert "truncated" in again["checkpoints_50epoch/fer-48_449.ckpt"]["problems"][0]
