"""The disk guard: room is checked before each save (a fake ``disk_usage`` whose free space is a capacity
minus what the folder holds), step checkpoints keep_last drops anyway go first, and a save that still does
not fit stops in one line; a write that fails anyway (ENOSPC injected at each write point) leaves no
half-committed checkpoint and every previous one in place."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from trainer.checkpoint import StepCheckpointer, save_fold_model
from trainer.disk_guard import (
    FAIL_WRITE_ENV,
    DiskFullError,
    DiskGuard,
    estimate_step_bytes,
    mount_point,
    need_bytes,
    prunable_now,
    run_json_error,
)
from tui.core import commit as protocol


class FakeDisk:
    """shutil.disk_usage of a filesystem of ``capacity`` bytes holding only ``root``."""

    def __init__(self, root: Path, capacity: int):
        self.root, self.capacity = root, capacity

    def __call__(self, _path: str):
        used = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        return SimpleNamespace(total=self.capacity, used=used, free=max(self.capacity - used, 0))


def _steps(folder: Path, sizes: dict[int, int]) -> dict[int, Path]:
    out = {}
    for step, size in sizes.items():
        with protocol.atomic_dir(folder / f"step_{step}", kind="step-checkpoint", fields={"step": step}) as t:
            (t / "w.bin").write_bytes(b"x" * size)
        out[step] = folder / f"step_{step}"
    return out


# --- pure parts ------------------------------------------------------------------------------------


def test_prunable_never_includes_best_or_newest_complete(tmp_path):
    committed = {s: tmp_path / f"step_{s}" for s in (10, 20, 30, 40)}
    assert [p.name for p in prunable_now(committed, 50, best_step=20, keep_last=2)] == ["step_10", "step_30"]
    # keep_last=1 would drop step_40 after step_50 lands; before it lands step_40 is all a resume has.
    assert [p.name for p in prunable_now(committed, 50, best_step=None, keep_last=1)] == [
        "step_10", "step_20", "step_30",
    ]  # fmt: skip
    assert prunable_now({}, 10, None, 1) == []


def test_need_is_the_previous_save_with_headroom_else_the_estimate():
    assert need_bytes(1000, 5) == 1100
    assert need_bytes(None, 1000) == 1100
    # bf16 weights + Adam's fp32 master and two moments for the trainable ones
    assert estimate_step_bytes(params=100, trainable=10, itemsize=2) == 200 + 10 * 12


def test_ensure_removes_oldest_first_only_while_short(tmp_path):
    folder = tmp_path / "fold_0"
    committed = _steps(folder, {10: 400, 20: 400, 30: 400})
    disk = FakeDisk(tmp_path, capacity=0)
    disk.capacity = disk("/").used + 800  # 200 bytes short of 1000
    removed = DiskGuard(disk_usage=disk).ensure(folder, 1000, [committed[10], committed[20]])
    assert [p.name for p in removed] == ["step_10"] and committed[20].exists() and committed[30].exists()
    assert DiskGuard(disk_usage=disk).ensure(folder, 100, [committed[20]]) == []


def test_still_short_is_one_line_naming_need_free_and_mount(tmp_path):
    folder = tmp_path / "fold_0"
    committed = _steps(folder, {10: 400, 20: 400})
    guard = DiskGuard(min_free_bytes=500, disk_usage=FakeDisk(tmp_path, capacity=1500))
    with pytest.raises(DiskFullError) as info:
        guard.ensure(folder, 1000, [committed[10]])
    message = str(info.value)
    assert message.startswith("disk full: need 1.5 KiB (incl. train.min_free_gb 500 B), free ")
    assert message.endswith(f" on {mount_point(folder)}") and "\n" not in message
    assert not committed[10].exists() and committed[20].exists()  # tried what it may, kept the newest
    assert run_json_error(info.value) == message
    assert run_json_error(ValueError("bad\nmore")) == "ValueError: bad"


# --- StepCheckpointer and save_fold_model on a real single-process Accelerator -----------------------


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.slow
def test_guard_frees_what_keep_last_drops_then_stops_the_run_resumable(tmp_path, trained_parts):
    accelerator, _model, _optimizer = trained_parts
    disk = FakeDisk(tmp_path, capacity=10**12)
    ckpt = StepCheckpointer(accelerator, tmp_path, 0, keep_last=2, guard=DiskGuard(disk_usage=disk))
    folder = ckpt.folder
    for step in (10, 20):
        ckpt.save(step, {"epoch": 0}, best_step=None)
    size = sum(p.stat().st_size for p in (folder / "step_20").rglob("*") if p.is_file())

    # Room for one more only once step_10 (which keep_last=2 drops after step_30 anyway) is gone.
    disk.capacity = 2 * size + int(size * 1.1) - 10  # 10 bytes short
    ckpt.save(30, {"epoch": 0}, best_step=None)
    assert _listing(folder) == ["step_20", "step_30"]
    assert ckpt.messages == ["low disk space: removed step_10 now (keep_last would after step_30)"]

    # Nothing left that may go (step_20 is the best, step_30 the newest): stop before writing anything.
    disk.capacity = 2 * size + size
    with pytest.raises(DiskFullError, match=r"^disk full: need .*, free .* on "):
        ckpt.save(40, {"epoch": 0}, best_step=20)
    assert _listing(folder) == ["step_20", "step_30"]
    assert all(protocol.verify(folder / n, check_hashes=True) == [] for n in _listing(folder))
    assert ckpt.latest()[0].name == "step_30"


@pytest.mark.slow
@pytest.mark.parametrize("point", ["save_state", "train_state", "commit", "manifest"])
def test_no_space_at_any_write_point_leaves_the_previous_checkpoints(
    tmp_path, trained_parts, monkeypatch, point
):
    accelerator, _model, _optimizer = trained_parts
    ckpt = StepCheckpointer(accelerator, tmp_path, 0, keep_last=1)
    ckpt.save(10, {"epoch": 0}, best_step=None)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    if point == "manifest":  # the commit's last write, inside tui.core.commit
        _fail_manifest(monkeypatch)
    else:
        monkeypatch.setenv(FAIL_WRITE_ENV, point)
    with pytest.raises(DiskFullError, match=r"^disk full: writing step_20 failed \(.*No space left"):
        ckpt.save(20, {"epoch": 0}, best_step=None)
    after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # no temp folder, no half step_20, step_10 untouched (keep_last=1 pruned nothing)
    assert ckpt.latest()[0].name == "step_10"


def _fail_manifest(monkeypatch) -> None:
    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(protocol, "write_json_atomic", full)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["weights", "trainer_state", "commit", "manifest", "guard"])
def test_fold_model_that_cannot_be_written_keeps_the_previous_one(
    tmp_path, trained_parts, monkeypatch, point
):
    accelerator, model, _optimizer = trained_parts
    target = tmp_path / "tiny_fold_0"

    def save(step: int, guard=None) -> None:
        save_fold_model(
            accelerator, model, None, target, trainer_state={"global_step": step},
            metric={"name": "f1_macro", "value": 0.5}, step=step, fold=0, guard=guard,
        )  # fmt: skip

    save(5)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    guard = None
    if point == "manifest":
        _fail_manifest(monkeypatch)
    elif point == "guard":  # the previous fold model x 1.1 does not fit next to it
        size = sum(len(b) for b in before.values())
        guard = DiskGuard(disk_usage=FakeDisk(tmp_path, capacity=size * 2))
    else:
        monkeypatch.setenv(FAIL_WRITE_ENV, point)
    with pytest.raises(DiskFullError, match="^disk full: "):
        save(10, guard)
    assert _listing(tmp_path) == ["tiny_fold_0"]  # no temp or parked folder left beside it
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert protocol.verify(target, check_hashes=True) == []
    assert json.loads((target / "trainer_state.json").read_text())["global_step"] == 5
