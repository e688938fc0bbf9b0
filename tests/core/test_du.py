"""``tui.core.du``: bytes per run and kind, trash apart, symlinks never followed, free space."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tui.core.du import disk_report, free_space, kind_of, mount_point


def _tree(root: Path) -> Path:
    files = {
        "runA/run.json": 11,
        "runA/checkpoints/fold_0/step_2/model.safetensors": 200,
        "runA/checkpoints/fold_0/step_2/optimizer.bin": 100,
        "runA/checkpoints/fold_0/step_2/random_states_0.pkl": 10,
        "runA/checkpoints/fold_0/step_4/pytorch_model/mp_rank_00_model_states.pt": 30,
        "runA/checkpoints/fold_0/step_4/pytorch_model/zero_pp_rank_0_mp_rank_00_optim_states.pt": 50,
        "runA/demo_fold_0/model.safetensors": 300,
        "runA/demo_fold_0/config.json": 5,
        "hf_out/checkpoint-4/pytorch_model.bin": 40,
        "hf_out/checkpoint-4/optimizer.pt": 20,
        "hf_out/checkpoint-4/trainer_state.json": 3,
        "nested/group/runB/run.json": 2,
        "nested/group/runB/x_fold_1/model.safetensors": 9,
        "nested/readme.txt": 4,
        ".ckpt-trash/0001/item/model.safetensors": 70,
        "notes.txt": 7,
    }
    for rel, size in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * size)
    big = root.parent / "outside.bin"
    big.write_bytes(b"x" * 5000)
    (root / "hf_out" / "link.safetensors").symlink_to(big)  # never followed
    (root / "runA" / "linked_dir").symlink_to(root.parent, target_is_directory=True)
    return root


def _fake_usage(total: int, free: int):
    return lambda _path: SimpleNamespace(total=total, used=total - free, free=free)


def test_bytes_per_run_and_kind_with_trash_apart(tmp_path):
    root = _tree(tmp_path / "root")
    report = disk_report(root, disk_usage=_fake_usage(1000, 50))
    runs = {r.run: r.bytes for r in report.runs}
    assert runs == {
        "runA": {"weights": 200 + 30 + 300, "optimizer": 100 + 10 + 50, "other": 11 + 5},
        "hf_out": {"weights": 40, "optimizer": 20, "other": 3},
        "nested/group/runB": {"weights": 9, "optimizer": 0, "other": 2},
        "nested": {"weights": 0, "optimizer": 0, "other": 4},
        ".": {"weights": 0, "optimizer": 0, "other": 7},
    }
    assert [r.run for r in report.runs][0] == "runA"  # biggest first
    assert report.trash_bytes == 70
    totals = report.totals()
    assert totals["trash"] == 70 and totals["total"] == sum(sum(b.values()) for b in runs.values()) + 70
    data = report.to_json()
    assert data["filesystem"]["free_bytes"] == 50 and data["filesystem"]["free_fraction"] == 0.05
    assert data["runs"][0] == {
        "run": "runA", "weights_bytes": 530, "optimizer_bytes": 160, "other_bytes": 16, "total_bytes": 706,
    }  # fmt: skip
    assert report.free.low and not free_space(root, _fake_usage(1000, 200)).low


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("model-00001-of-00002.safetensors", "weights"),
        ("bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt", "optimizer"),
        ("zero_pp_rank_1_mp_rank_00_model_states.pt", "weights"),
        ("__0_0.distcp", "weights"),
        ("scheduler.pt", "optimizer"),
        ("rng_state_3.pth", "optimizer"),
        ("tokenizer.json", "other"),
        ("valid_df_fold_0.csv", "other"),
    ],
)
def test_kind_of(name, kind):
    assert kind_of(name) == kind


def test_mount_point_of_a_missing_path_is_its_existing_parents(tmp_path):
    assert mount_point(tmp_path / "not" / "yet") == mount_point(tmp_path)
    assert mount_point(tmp_path).is_dir()


def test_free_space_unknown_is_a_problem_not_a_crash(tmp_path):
    def broken(_path):
        raise PermissionError(13, "Permission denied")

    report = disk_report(_tree(tmp_path / "root"), disk_usage=broken)
    assert report.free is None and report.to_json()["filesystem"] is None
    assert report.problems == [f"{tmp_path / 'root'}: free space unknown (Permission denied)"]
