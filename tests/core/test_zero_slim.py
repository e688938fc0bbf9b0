"""DeepSpeed checkpoints: parameters counted from the model-states file, and slim deciding from the actual
dtypes whether the ZeRO optimizer shards are the only full-precision copy of the weights.

The files are written with torch.save in DeepSpeed's layout (what engine.save_checkpoint puts in each
file, tensors of the real dtypes); tests/core/test_promote.py does the same on real DeepSpeed output."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest

from tests.fixtures import synthetic as syn
from tui.core.actions import plan_slim
from tui.core.scan import scan

CLOCK = lambda: 4e9  # noqa: E731  (far in the future: nothing counts as being written)
SHAPES = {"embed.weight": (12, 4), "layer.weight": (4, 4), "layer.bias": (4,), "head.weight": (3, 4)}
PARAMETERS = sum(math.prod(shape) for shape in SHAPES.values())


def _write_zero(folder: Path, *, stage: int, dtype: str, world: int = 2) -> None:
    """``folder/pytorch_model/``: DeepSpeed's files of a ZeRO ``stage`` run training in ``dtype``."""
    import torch

    tdtype = {"F32": torch.float32, "BF16": torch.bfloat16}[dtype]
    ds = folder / "pytorch_model"
    ds.mkdir(parents=True)
    module = {k: torch.randn(*s).to(tdtype) if stage < 3 else torch.empty(0, dtype=tdtype) for k, s in SHAPES.items()}
    states = {"module": module, "buffer_names": [], "optimizer": None, "lr_scheduler": None,
              "param_shapes": [{k: torch.Size(s) for k, s in SHAPES.items()}], "ds_version": "0.19.8"}  # fmt: skip
    prefix = "bf16_" if dtype == "BF16" else ""
    per_rank = -(-PARAMETERS // world)
    for r in range(world):
        flat = [torch.zeros(per_rank)]
        torch.save({"optimizer_state_dict": {"single_partition_of_fp32_groups": flat,
                                             "base_optimizer_state": {"state": {0: {"exp_avg": torch.zeros(per_rank)}}}},
                    "ds_version": "0.19.8"}, ds / f"{prefix}zero_pp_rank_{r}_mp_rank_00_optim_states.pt")  # fmt: skip
        if stage == 3:
            torch.save(states, ds / f"zero_pp_rank_{r}_mp_rank_00_model_states.pt")
    if stage < 3:
        torch.save(states, ds / "mp_rank_00_model_states.pt")
    (folder / "latest").write_text("pytorch_model")
    for r in range(world):
        (folder / f"random_states_{r}.pkl").write_bytes(pickle.dumps({"rank": r}))
    syn.write_torch_zip(folder / "scheduler.bin")


@pytest.mark.parametrize(("stage", "dtype"), [(2, "F32"), (2, "BF16"), (3, "F32")])
def test_parameters_come_from_the_model_states(tmp_path, stage, dtype):
    _write_zero(tmp_path / "step_10", stage=stage, dtype=dtype)
    (info,) = scan(tmp_path)
    assert info.kind == "accelerate-state"
    if stage == 3:  # placeholders: the numbers live in the optimizer shards' flat partitions only
        assert info.parameters is None and info.dtypes is None
    else:
        assert (info.parameters, info.dtypes, info.tensors) == (PARAMETERS, {dtype: PARAMETERS}, len(SHAPES))


def _dropped(plan) -> list[str]:
    return sorted(i.path.rsplit("/", 1)[-1] for i in plan.items)


def test_slim_of_an_fp32_zero2_checkpoint_drops_the_shards_and_says_what_holds_the_weights(tmp_path):
    _write_zero(tmp_path / "step_10", stage=2, dtype="F32")
    plan = plan_slim(tmp_path, ["step_10"], clock=CLOCK)
    assert _dropped(plan) == ["random_states_0.pkl", "random_states_1.pkl", "scheduler.bin",
                              "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]  # fmt: skip
    (kept,) = plan.kept
    assert kept.reason == (
        "weights stay: pytorch_model/mp_rank_00_model_states.pt (80 parameters, F32) "
        "(the ZeRO optimizer shards duplicate them in fp32 and go)"
    )
    assert ": RNG state, ZeRO optimizer shard, scheduler state); weights, config" in plan.summary


@pytest.mark.parametrize(("stage", "dtype", "besides"), [
    (2, "BF16", "pytorch_model/mp_rank_00_model_states.pt (80 parameters, BF16)"),
    (3, "F32", "pytorch_model/zero_pp_rank_0_mp_rank_00_model_states.pt (+1 more) (ZeRO-3 placeholders, no weights)"),
])  # fmt: skip
def test_slim_keeps_the_shards_when_they_are_the_only_full_precision_copy(tmp_path, stage, dtype, besides):
    _write_zero(tmp_path / "step_10", stage=stage, dtype=dtype)
    plan = plan_slim(tmp_path, ["step_10"], clock=CLOCK)
    assert _dropped(plan) == ["random_states_0.pkl", "random_states_1.pkl", "scheduler.bin"]
    (kept,) = plan.kept
    assert kept.reason.startswith("weights stay in the 2 ZeRO optimizer shard(s) (")
    assert kept.reason.endswith(
        f"kept: the only full-precision (fp32) copy of the weights (besides them: {besides}); "
        "promote this checkpoint first, then slim"
    )
    assert "ZeRO" not in plan.summary and ": RNG state, scheduler state); weights, config" in plan.summary


@pytest.mark.parametrize(("dtype", "shards_go"), [("F32", True), ("BF16", False)])
def test_consolidated_weights_free_the_shards_only_in_full_precision(tmp_path, dtype, shards_go):
    _write_zero(tmp_path / "step_10", stage=2, dtype="BF16")
    syn.write_safetensors(tmp_path / "step_10" / "model.safetensors", {"w": (dtype, (4, 4))})
    plan = plan_slim(tmp_path, ["step_10"], clock=CLOCK)
    assert any("optim_states" in name for name in _dropped(plan)) is shards_go


def test_unreadable_model_states_keep_the_shards(tmp_path):
    ds = tmp_path / "step_3" / "pytorch_model"
    ds.mkdir(parents=True)
    (ds / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"o" * 64)
    (ds / "mp_rank_00_model_states.pt").write_bytes(b"m" * 8)
    (tmp_path / "step_3" / "random_states_0.pkl").write_bytes(b"r" * 4)
    plan = plan_slim(tmp_path, ["step_3"], clock=CLOCK)
    assert _dropped(plan) == ["random_states_0.pkl"]
    assert "besides them: pytorch_model/mp_rank_00_model_states.pt (unreadable)" in plan.kept[0].reason
