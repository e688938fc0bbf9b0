"""Across engines, the optimizer state is carried exactly: a plain torch AdamW checkpoint loaded into a
DeepSpeed ZeRO-2 or ZeRO-3 engine (trainer/engine_switch.py ``load_from_plain``) and the engine's checkpoint loaded
back into a plain AdamW (``load_from_deepspeed``) hold the same fp32 weights, exp_avg, exp_avg_sq and step,
and each trains on from that step. One DeepSpeed process, a tiny model. (The next steps are not compared:
DeepSpeed's ZeRO-2 and torch's AdamW drift apart by about 1e-3 after two steps from the same start anyway.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.subprocess_env import cpu_only

pytestmark = pytest.mark.slow

SCRIPT = r"""
import os, socket, sys
from pathlib import Path
from types import SimpleNamespace
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
import deepspeed, torch
from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state
from safetensors.torch import save_file
from trainer.engine_switch import load_from_deepspeed, load_from_plain
from trainer.modeling import param_groups

import accelerate.utils

accelerate.utils.set_seed = lambda *a, **k: None  # needs a real Accelerator; the RNG is not checked here
deepspeed.init_distributed(dist_backend="gloo")
out, stage = Path(sys.argv[1]), int(sys.argv[2])
x = torch.randn(4, 4, generator=torch.Generator().manual_seed(1))
cfg = SimpleNamespace(train=SimpleNamespace(seed=0))


def make(shift=0.0):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(shift)  # another start: the load must overwrite it
    return model


def plain_fit(model, fused):
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-2, fused=fused)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


def accelerator(stage):
    plugin = SimpleNamespace(zero_stage=stage) if stage else None
    return SimpleNamespace(is_main_process=True, num_processes=1, unwrap_model=lambda m: m,
                           wait_for_everyone=lambda: None, state=SimpleNamespace(deepspeed_plugin=plugin))


def state_of(stage):
    return {"world_size": 1, "zero_stage": stage, "global_step": 3, "batches_consumed_in_epoch": 3}


def same(a, b, what):
    assert torch.allclose(a.float(), b.float(), atol=1e-6, rtol=0), (what, (a - b).abs().max())


# plain: three AdamW steps, saved as accelerate's save_state names the files
plain = make()
opt, sched = plain_fit(plain, fused=True)
for _ in range(3):
    plain(x).pow(2).sum().backward()
    opt.step(); sched.step(); opt.zero_grad()
step_dir = out / "step_3"
step_dir.mkdir(parents=True)
save_file({k: v.contiguous() for k, v in plain.state_dict().items()}, str(step_dir / "model.safetensors"))
torch.save(opt.state_dict(), step_dir / "optimizer.bin")
torch.save(sched.state_dict(), step_dir / "scheduler.bin")

# plain -> ZeRO-2
config = {"train_batch_size": 4, "zero_optimization": {"stage": stage}, "zero_allow_untested_optimizer": True}
ds_model = make(shift=0.5)
engine, *_ = deepspeed.initialize(model=ds_model, optimizer=torch.optim.AdamW(param_groups(ds_model, 0.01), lr=1e-2), config=config)
_, ds_sched = plain_fit(make(), fused=False)
fr = SimpleNamespace(model=engine, optimizer=SimpleNamespace(optimizer=engine.optimizer), scheduler=SimpleNamespace(scheduler=ds_sched))
loaded, step = load_from_plain(accelerator(stage), fr, step_dir, state_of(None), cfg, 0)
assert step == 3.0 and loaded["global_step"] == 3, (step, loaded)
params = dict(plain.named_parameters())
for name, p in engine.module.named_parameters():
    same(safe_get_full_fp32_param(p), params[name], name)
    with deepspeed.zero.GatheredParameters([p]):  # ZeRO-3 partitions the model's weights
        same(p.data, params[name], f"{name} (model copy)")
    for key in ("exp_avg", "exp_avg_sq"):
        same(safe_get_full_optimizer_state(p, key), opt.state[params[name]][key], f"{name} {key}")
# the engine trains on from there: Adam's step goes on from 3 (not from 0)
engine.backward(engine(x).pow(2).sum())
engine.step()
assert {float(st["step"]) for st in engine.optimizer.optimizer.state.values()} == {4.0}

# ZeRO-2 -> plain
engine.save_checkpoint(str(out / "ds_step"), tag="pytorch_model")
torch.save(ds_sched.state_dict(), out / "ds_step" / "scheduler.bin")
back = make(shift=-0.5)
opt2, sched2 = plain_fit(back, fused=True)
fr2 = SimpleNamespace(model=back, optimizer=SimpleNamespace(optimizer=opt2), scheduler=SimpleNamespace(scheduler=sched2))
_, step2 = load_from_deepspeed(accelerator(None), fr2, out / "ds_step", state_of(stage), cfg, 0)
assert step2 == 4.0, step2
assert not (out / ".universal_ds_step.tmp").exists()
back_params = dict(back.named_parameters())
assert {float(st["step"]) for st in opt2.state.values()} == {4.0}
for name, p in engine.module.named_parameters():
    same(back_params[name], safe_get_full_fp32_param(p), name)
    for key in ("exp_avg", "exp_avg_sq"):
        same(opt2.state[back_params[name]][key], safe_get_full_optimizer_state(p, key), f"{name} {key}")
back(x).pow(2).sum().backward()
opt2.step()  # the loaded state is one torch AdamW takes (step tensors where fused AdamW wants them)
assert {float(st["step"]) for st in opt2.state.values()} == {5.0}
print("OK")
"""


@pytest.mark.parametrize("stage", [2, 3])
def test_optimizer_state_crosses_engines_exactly(tmp_path, stage):
    script = tmp_path / "switch.py"
    script.write_text(SCRIPT)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = cpu_only({**os.environ, "PYTHONPATH": repo})
    env.setdefault("TORCH_EXTENSIONS_DIR", os.path.expanduser("~/.cache/torch_extensions"))
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(stage)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, (proc.stdout + proc.stderr)[-4000:]
