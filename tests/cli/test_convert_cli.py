"""``ckpt-tui convert universal STEP``: DeepSpeed's universal form written into a ZeRO step checkpoint through
the commit protocol; refusals in one line, nothing changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.fixtures.ops import write_file
from tests.subprocess_env import cpu_only
from tui.cli import main
from tui.core import commit
from tui.core.inspect import inspect_path
from tui.core.resume_layout import layout_of

STEP_SCRIPT = r'''
"""One ZeRO-2 Adam step of a tiny model, saved as accelerate's save_state names it (step_1/pytorch_model)."""
import os, socket, sys
from pathlib import Path
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
import deepspeed, torch
deepspeed.init_distributed(dist_backend="gloo")
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
config = {"train_batch_size": 1, "zero_optimization": {"stage": 2}, "zero_allow_untested_optimizer": True}
engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3), config=config)
for _ in range(2):
    engine.backward(engine(torch.randn(1, 4)).sum())
    engine.step()
engine.save_checkpoint(sys.argv[1], tag="pytorch_model")
'''


@pytest.fixture(scope="module")
def zero_step(tmp_path_factory):
    """A committed 1-process ZeRO-2 step checkpoint after 2 Adam steps (about 5 s: DeepSpeed's start)."""
    base = tmp_path_factory.mktemp("zero_step")
    step = base / "run" / "checkpoints" / "fold_0" / "step_2"
    script = base / "make.py"
    script.write_text(STEP_SCRIPT)
    env = cpu_only({**os.environ, "TORCH_EXTENSIONS_DIR": os.path.expanduser("~/.cache/torch_extensions")})
    proc = subprocess.run(
        [sys.executable, str(script), str(step)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (step / "train_state.json").write_text(
        json.dumps({"fold": 0, "global_step": 2, "world_size": 1, "zero_stage": 2})
    )
    write_file(step / "random_states_0.pkl", b"\x80\x02}q\x00.")  # what save_state writes per rank
    commit.commit(step, step.with_name("step_2.new"), kind="step-checkpoint", fields={"step": 2, "fold": 0})
    os.replace(step.with_name("step_2.new"), step)
    return base / "run"


def _run(capsys, *args):
    code = main(["convert", "universal", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_writes_the_universal_form_through_the_commit_protocol(zero_step, tmp_path, capsys):
    import shutil

    import torch

    root = tmp_path / "run"
    shutil.copytree(zero_step, root)
    step = root / "checkpoints" / "fold_0" / "step_2"
    shards = {p.name: p.read_bytes() for p in (step / "pytorch_model").iterdir()}
    before = commit.read_manifest(step)
    code, out, err = _run(capsys, step, "--root", root, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["source"] == "checkpoints/fold_0/step_2" and result["files_added"] >= 4 * 4
    assert commit.verify(step, check_hashes=True) == []  # committed: every file, old and new, hashed
    after = commit.read_manifest(step)
    assert after["kind"] == before["kind"] and after["step"] == 2
    assert set(before["files"]) < set(after["files"])
    assert any(f.startswith("universal/zero/") for f in after["files"])
    assert {p.name: p.read_bytes() for p in (step / "pytorch_model").iterdir()} == shards  # shards untouched
    moments = step / "universal" / "zero" / "0.weight"
    assert float(torch.load(moments / "step.pt", weights_only=True)) == 2.0  # Adam's step carried
    assert torch.load(moments / "exp_avg.pt", weights_only=True)["param"].abs().sum() > 0
    assert layout_of(step, json.loads((step / "train_state.json").read_text())).universal
    assert inspect_path(root, step).to_json()["resume"]["resumable_on"] == ["any"]
    assert not [n for n in os.listdir(step.parent) if n.startswith(".")]  # no temp folder left

    code, _, err = _run(capsys, step, "--root", root)
    assert code == 1 and "already holds DeepSpeed's universal form" in err and len(err.splitlines()) == 1


def _fake_step(root, *, shard: bytes = b"x" * 100, committed: bool = True):
    step = root / "checkpoints" / "fold_0" / "step_4"
    write_file(step / "pytorch_model" / "zero_pp_rank_0_mp_rank_00_optim_states.pt", shard)
    write_file(step / "pytorch_model" / "mp_rank_00_model_states.pt", shard)
    write_file(step / "random_states_0.pkl", b"\x80\x02}q\x00.")
    if committed:
        tmp = step.with_name("x")
        os.replace(step, tmp)
        commit.commit(tmp, step, kind="step-checkpoint")
    return step


@pytest.mark.parametrize(
    "case, needle",
    [
        ("plain", "not a DeepSpeed ZeRO step checkpoint"),
        ("uncommitted", "not a committed checkpoint"),
        ("unsafe", "pickle scan: unsafe"),
    ],
)
def test_refusals_are_one_line_and_change_nothing(tmp_path, capsys, case, needle):
    root = tmp_path / "run"
    if case == "plain":
        step = root / "checkpoints" / "fold_0" / "step_4"
        write_file(step / "model.safetensors")
        write_file(step / "random_states_0.pkl", b"\x80\x02}q\x00.")
    else:
        evil = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
        step = _fake_step(
            root, shard=evil if case == "unsafe" else b"\x80\x02}q\x00.", committed=case != "uncommitted"
        )
    listing = sorted(p.relative_to(root) for p in root.rglob("*"))
    code, _, err = _run(capsys, step, "--root", root)
    assert code == 1 and needle in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == listing
