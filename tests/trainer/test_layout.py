"""A step checkpoint names the process layout it needs, and a launch with another layout is refused in
one line before accelerate/DeepSpeed fail inside load_state."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from trainer.checkpoint import StepCheckpointer
from trainer.layout import Layout, ResumeLayoutError, check_resumable_here, current_layout, layout_of
from tui.core import commit as protocol


def _files(folder: Path, names: list[str]) -> Path:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    return folder


ZERO2_2PROC = [
    "random_states_0.pkl", "random_states_1.pkl", "pytorch_model/mp_rank_00_model_states.pt",
    "pytorch_model/zero_pp_rank_0_mp_rank_00_optim_states.pt",
    "pytorch_model/zero_pp_rank_1_mp_rank_00_optim_states.pt", "pytorch_model/latest",
]  # fmt: skip
ZERO3_2PROC = [
    "random_states_0.pkl", "random_states_1.pkl",
    *(f"pytorch_model/zero_pp_rank_{r}_mp_rank_00_{k}_states.pt" for r in (0, 1) for k in ("model", "optim")),
]  # fmt: skip
PLAIN_1PROC = ["model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"]


@pytest.mark.parametrize(
    ("names", "expected"),
    [(ZERO2_2PROC, Layout(2, 2)), (ZERO3_2PROC, Layout(2, 3)), (PLAIN_1PROC, Layout(1, None))],
)
def test_layout_from_the_files_save_state_writes(tmp_path, names, expected):
    assert layout_of(_files(tmp_path, names), {}) == expected


def test_train_state_wins_over_file_names_and_nothing_known_is_none(tmp_path):
    folder = _files(tmp_path, ZERO2_2PROC)
    assert layout_of(folder, {"world_size": 4, "zero_stage": 3}) == Layout(4, 3)
    assert layout_of(folder, {"world_size": 1, "zero_stage": None}) == Layout(1, None)
    assert layout_of(folder, {"world_size": "2"}) == Layout(2, 2)  # not trusted: back to the files
    assert layout_of(tmp_path / "empty", {}) is None


def test_other_layout_is_one_line_naming_what_it_needs(tmp_path):
    folder = _files(tmp_path / "step_8", ZERO2_2PROC)
    with pytest.raises(ResumeLayoutError) as info:
        check_resumable_here(folder, {}, Layout(1, None))
    message = str(info.value)
    assert "\n" not in message
    assert "written by 2 processes under DeepSpeed ZeRO-2" in message
    assert "this launch has 1 process without DeepSpeed" in message
    assert "relaunch with 2 processes and DeepSpeed ZeRO-2" in message
    with pytest.raises(ResumeLayoutError, match="ZeRO-3"):
        check_resumable_here(folder, {"world_size": 2, "zero_stage": 3}, Layout(2, 2))
    check_resumable_here(folder, {}, Layout(2, 2))  # the same layout loads
    check_resumable_here(folder, {}, Layout(2, 1))  # ZeRO-1 and ZeRO-2 share the file layout


def test_current_layout_reads_the_deepspeed_plugin():
    plain = SimpleNamespace(num_processes=1, state=SimpleNamespace(deepspeed_plugin=None))
    ds = SimpleNamespace(
        num_processes=2, state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=3))
    )
    assert current_layout(plain) == Layout(1, None)
    assert current_layout(ds) == Layout(2, 3)


class _Plain1:
    is_main_process = True
    num_processes = 1
    project_configuration = None
    state = SimpleNamespace(deepspeed_plugin=None)

    def wait_for_everyone(self):
        pass

    def load_state(self, path):  # reached only when the layout matches
        self.loaded = path


def test_load_refuses_another_layout_before_load_state(tmp_path):
    acc = _Plain1()
    ckpt = StepCheckpointer(acc, tmp_path, fold=0, keep_last=2)
    target = tmp_path / "checkpoints" / "fold_0" / "step_8"
    with protocol.atomic_dir(target, kind="step-checkpoint", fields={"step": 8}) as tmp:
        _files(tmp, ZERO2_2PROC)
        (tmp / "train_state.json").write_text(json.dumps({"fold": 0, "global_step": 8}))
    path, _state = ckpt.latest()
    with pytest.raises(ResumeLayoutError, match="written by 2 processes under DeepSpeed ZeRO-2"):
        ckpt.load(path)
    assert not hasattr(acc, "loaded")


def test_inspect_json_says_which_layout_a_step_checkpoint_resumes_on(tmp_path):
    from tui.core.inspect import inspect_path

    folder = tmp_path / "run" / "checkpoints" / "fold_0" / "step_8"
    with protocol.atomic_dir(folder, kind="step-checkpoint", fields={"step": 8}) as tmp:
        _files(tmp, ZERO3_2PROC)
        (tmp / "train_state.json").write_text(json.dumps({"fold": 0, "global_step": 8}))
    assert inspect_path(tmp_path, folder).to_json()["resume"] == {
        "world_size": 2, "zero_stage": 3, "universal": False,
        "resumable_on": ["2 processes under DeepSpeed ZeRO-3", "any number of processes under DeepSpeed ZeRO-3",
                         "any number of processes without DeepSpeed"],
    }  # fmt: skip
    (folder / "pytorch_model" / "zero").mkdir()  # DeepSpeed's universal form beside the shards
    (folder / "train_state.json").write_text(json.dumps({"world_size": 2, "zero_stage": 3}))
    resume = inspect_path(tmp_path, folder).to_json()["resume"]
    assert resume["universal"] is True and resume["resumable_on"] == ["any"]
    plain = tmp_path / "run" / "checkpoints" / "fold_1" / "step_4"
    with protocol.atomic_dir(plain, kind="step-checkpoint", fields={"step": 4}) as tmp:
        _files(tmp, PLAIN_1PROC)
        (tmp / "train_state.json").write_text(json.dumps({"fold": 1, "global_step": 4}))
    assert inspect_path(tmp_path, plain).to_json()["resume"]["resumable_on"] == [
        "1 process without DeepSpeed", "any number of processes under DeepSpeed ZeRO"
    ]
    fold_model = tmp_path / "run" / "m_fold_0"
    _files(fold_model, ["model.safetensors", "config.json"])
    assert inspect_path(tmp_path, fold_model).to_json()["resume"] is None


# --- another world size: DeepSpeed's universal checkpoint (trainer/universal.py) ------------------------


def test_which_other_layouts_load_through_the_universal_form(tmp_path):
    from trainer.universal import needs_universal

    folder = _files(tmp_path / "step_8", ZERO2_2PROC)
    state = {"world_size": 2, "zero_stage": 2, "batch_size": 8, "grad_accum": 1}
    assert needs_universal(folder, state, Layout(2, 2), (8, 1)) is None  # same layout: as it is
    assert needs_universal(folder, state, Layout(1, 2), (8, 2)) == "universal"
    assert needs_universal(folder, state, Layout(4, 1), (4, 1)) == "universal"  # ZeRO-1 loads ZeRO-2's form
    with pytest.raises(ResumeLayoutError, match=r"global batch 16 \(8 x 1 x 2 processes\) would become 8 on 1 "
                       r"process; keep it with --train.grad_accum 2 \(and --resume\)$"):  # fmt: skip
        needs_universal(folder, state, Layout(1, 2), (8, 1))
    with pytest.raises(ResumeLayoutError, match="keep it with --train.batch_size and --train.grad_accum"):
        needs_universal(folder, state, Layout(3, 2), (8, 1))
    assert needs_universal(folder, state, Layout(1, None), (8, 2)) == "from-deepspeed"  # engine_switch.py
    with pytest.raises(ResumeLayoutError, match="this launch has 2 processes under DeepSpeed ZeRO-3"):
        needs_universal(folder, state, Layout(2, 3), (8, 1))
    # written before the batch was recorded: the run's config is trusted
    assert needs_universal(folder, {"world_size": 2, "zero_stage": 2}, Layout(1, 2), (8, 1)) == "universal"
    plain = _files(tmp_path / "step_4", PLAIN_1PROC)
    plain_state = {"world_size": 1, "zero_stage": None, "batch_size": 8, "grad_accum": 2}
    assert needs_universal(plain, plain_state, Layout(1, 2), (8, 2)) == "from-plain"
    assert needs_universal(plain, plain_state, Layout(2, 1), (8, 1)) == "from-plain"
    assert needs_universal(plain, plain_state, Layout(1, 3), (8, 2)) == "from-plain"
    with pytest.raises(ResumeLayoutError, match=r"this launch has 2 processes without DeepSpeed; relaunch wi"):
        needs_universal(plain, plain_state, Layout(2, None), (8, 1))
    with pytest.raises(ResumeLayoutError, match="would become 8 on 1 process"):
        needs_universal(plain, plain_state, Layout(1, 2), (8, 1))


def test_requeued_on_another_world_size_keeps_the_global_batch():
    from trainer.config import parse_args
    from trainer.universal import keep_global_batch

    cfg = parse_args(["--train.batch_size", "8", "--train.grad_accum", "1"])
    previous = {"world_size": 2, "config": {"train": {"batch_size": 8, "grad_accum": 1}}}
    kept, note = keep_global_batch(cfg, previous, 1)
    assert kept.train.grad_accum == 2 and kept.config_hash() != cfg.config_hash()
    assert note == "1 process now: train.grad_accum 1 -> 2 keeps the global batch of 16"
    assert keep_global_batch(cfg, previous, 2) == (cfg, None)  # same world size
    assert keep_global_batch(cfg, None, 1) == (cfg, None)  # a new run
    # run.json keeps the global batch trained with, also after an adjusted launch
    adjusted = {"world_size": 1, "global_batch": 16, "config": {"train": {"batch_size": 8, "grad_accum": 1}}}
    assert keep_global_batch(cfg, adjusted, 2) == (cfg, None)
    with pytest.raises(ResumeLayoutError, match="global batch 16 of this run cannot be kept on 3 processes"):
        keep_global_batch(cfg, previous, 3)
    chosen = parse_args(["--train.batch_size", "4", "--train.grad_accum", "4"])  # the user's own choice
    assert keep_global_batch(chosen, previous, 1) == (chosen, None)
