"""DeepSpeed fp16 dynamic loss scaling on CPU: a forced overflow is skipped, counted, and halves the scale.

TEST SEAM (clearly marked): DeepSpeed's CPU accelerator refuses fp16 ("Type fp16 is not supported on
your device", engine.py _do_sanity_check). The worker below overrides
``type(get_accelerator()).is_fp16_supported`` to return True BEFORE building the Accelerator, so the
real fp16 engine, loss scaler and ZeRO-2 optimizer run on CPU (PLATFORM_NOTES.md). Nothing in trainer/
has such a seam. The worker runs in a fresh process so the seam and DeepSpeed's process group never
leak into other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.subprocess_env import cpu_only, free_port

REPO = Path(__file__).resolve().parents[2]
DS_JSON = REPO / "ds_configs" / "zero2_fp16.json"
OVERFLOW = 1e30  # the loss is multiplied by this on the forced-overflow steps: inf in fp16




@pytest.mark.slow
def test_fp16_overflow_is_skipped_counted_and_halves_the_scale(tmp_path):
    out = tmp_path / "fp16.json"
    env = {
        **cpu_only(), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "PYTHONPATH": str(REPO),
    }  # fmt: skip
    proc = subprocess.run(
        [sys.executable, __file__, str(out)], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = json.loads(out.read_text())
    config = json.loads(DS_JSON.read_text())["fp16"]
    initial = 2.0 ** config["initial_scale_power"]
    assert config["hysteresis"] == 2  # the expectations below follow from it

    by_kind = [(s["forced_overflow"], s["skipped"]) for s in steps]
    assert by_kind == [(False, False), (True, True), (True, True), (False, False), (True, True)]
    assert steps[0]["scale_after"] == initial and steps[0]["params_changed"]
    # hysteresis 2: the first overflow only uses up the hysteresis, the second consecutive one halves
    assert steps[1]["scale_after"] == initial and not steps[1]["params_changed"]
    assert steps[2]["scale_after"] == initial / 2 and not steps[2]["params_changed"]
    assert steps[3]["scale_after"] == initial / 2 and steps[3]["params_changed"]
    assert not steps[4]["params_changed"]
    assert all(s["loss_is_finite"] for s in steps if not s["forced_overflow"])
    # our count (accelerator.optimizer_step_was_skipped, what the loop uses) matches DeepSpeed's own
    assert [s["skipped_total"] for s in steps] == [0, 1, 2, 2, 3]
    assert [s["engine_skipped_steps"] for s in steps] == [0, 1, 2, 2, 3]
    assert all(s["param_dtype"] == "torch.float16" for s in steps)


def _worker(out_path: str) -> None:
    import torch
    from deepspeed.accelerator import get_accelerator

    # ---- TEST SEAM: let DeepSpeed's CPU accelerator accept fp16 (see module docstring) ----
    type(get_accelerator()).is_fp16_supported = lambda self: True
    # ----------------------------------------------------------------------------------------

    from accelerate import Accelerator
    from accelerate.utils import DeepSpeedPlugin, InitProcessGroupKwargs

    from tests.fixtures.ckpt import tiny_model

    plugin = DeepSpeedPlugin(hf_ds_config=str(DS_JSON))
    plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 2  # "auto" is filled from a dataloader
    accelerator = Accelerator(
        mixed_precision="fp16",
        deepspeed_plugin=plugin,
        kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")],
    )
    model = tiny_model(seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer = accelerator.prepare(model, optimizer)
    ids = torch.tensor([[2, 4, 11, 3], [2, 7, 15, 3]])
    labels = torch.tensor([1, 0])

    steps, skipped_total = [], 0
    for forced in (False, True, True, False, True):
        before = [p.detach().clone() for p in model.parameters()]
        loss = model(input_ids=ids, labels=labels).loss
        finite = bool(torch.isfinite(loss).item())
        accelerator.backward(loss * OVERFLOW if forced else loss)
        optimizer.step()
        optimizer.zero_grad()
        skipped = accelerator.optimizer_step_was_skipped
        skipped_total += int(skipped)
        changed = any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters(), strict=True))
        steps.append({
            "forced_overflow": forced, "skipped": bool(skipped), "skipped_total": skipped_total,
            "engine_skipped_steps": int(model.skipped_steps), "scale_after": float(model.optimizer.cur_scale),
            "params_changed": changed, "loss_is_finite": finite,
            "param_dtype": str(next(model.parameters()).dtype),
        })  # fmt: skip
    Path(out_path).write_text(json.dumps(steps, indent=1))


if __name__ == "__main__":
    _worker(sys.argv[1])
