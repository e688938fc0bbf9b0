"""On shared storage rank 0 decides and the others follow; every rank hashes the files it wrote itself.

A real 2-process gloo world (torchrun, CPU). Rank 1 is given a stale directory listing, as an NFS or
Lustre client caching the checkpoint folder would have: without the broadcast it would resume from
another checkpoint than rank 0, and train on other batches.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.subprocess_env import cpu_only, free_port
from trainer.checkpoint import writer_rank

REPO = Path(__file__).resolve().parents[2]
HIDDEN_FROM_RANK_1 = "step_6"


def test_writer_rank_of_save_state_files():
    assert writer_rank("zero_pp_rank_1_mp_rank_00_model_states.pt", 2) == 1
    assert writer_rank("zero_pp_rank_1_mp_rank_00_model_states.pt", 1) == 0  # not a rank of this world
    assert writer_rank("bf16_zero_pp_rank_3_mp_rank_00_optim_states.pt", 4) == 3
    assert writer_rank("random_states_1.pkl", 2) == 1
    assert writer_rank("mp_rank_00_model_states.pt", 2) == 0  # ZeRO-2's one model file
    assert writer_rank("scheduler.bin", 2) == writer_rank("random_states_5.pkl", 2) == 0




@pytest.mark.slow
def test_rank_zero_decides_the_resume_point_and_each_rank_hashes_its_own_files(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(free_port()), __file__, str(tmp_path)]  # fmt: skip
    env = {**cpu_only(), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    assert ranks[1]["own_listing"] == "step_3"  # the disagreement is real...
    assert [r["latest"] for r in ranks] == ["step_6", "step_6"]  # ...and rank 0's choice wins
    assert [r["train_state_step"] for r in ranks] == [6, 6]
    assert ranks[1]["notes"] == ranks[0]["notes"] == ["checkpoint step_7 is incomplete (no ckpt_manifest.json: "
                                                      "never committed (in progress or killed while writing)); "
                                                      "resuming from step_6"]  # fmt: skip

    assert sorted(ranks[1]["hashed"]) == [
        "pytorch_model/zero_pp_rank_1_mp_rank_00_model_states.pt", "random_states_1.pkl",
    ]  # fmt: skip
    assert sorted(ranks[0]["hashed"]) == [
        "pytorch_model/zero_pp_rank_0_mp_rank_00_model_states.pt", "random_states_0.pkl", "scheduler.bin",
    ]  # fmt: skip  (train_state.json is hashed by the commit itself)
    assert ranks[0]["problems"] == [] and len(ranks[0]["manifest_files"]) == 6


def _worker(root: Path) -> None:
    import torch
    from accelerate import Accelerator

    import trainer.checkpoint as checkpoint
    from tui.core import commit as protocol

    accelerator = Accelerator(cpu=True)
    rank = accelerator.process_index
    assert accelerator.num_processes == 2
    ckpt = checkpoint.StepCheckpointer(accelerator, root / "run", fold=0, keep_last=5)
    if accelerator.is_main_process:
        for step in (3, 6):
            with protocol.atomic_dir(ckpt.folder / f"step_{step}", kind="step-checkpoint") as tmp:
                (tmp / checkpoint.TRAIN_STATE_NAME).write_text(json.dumps({"global_step": step}))
        (ckpt.folder / "step_7").mkdir()  # killed mid-write: never committed
    accelerator.wait_for_everyone()

    real_iterdir = Path.iterdir

    def stale_iterdir(self):  # rank 1's cached listing predates step_6
        return (p for p in real_iterdir(self) if p.name != HIDDEN_FROM_RANK_1)

    if rank == 1:
        Path.iterdir = stale_iterdir
    own_listing = ckpt._find_latest(check_hashes=False)[0][0].name
    path, state = ckpt.latest()
    Path.iterdir = real_iterdir

    hashed: list[str] = []
    real_sha = protocol.sha256_file

    def spying_sha(path):
        hashed.append(Path(path).relative_to(tmp_dir).as_posix())
        return real_sha(path)

    def fake_save_state(folder):  # what a ZeRO run's save_state writes, each rank its own part
        folder = Path(folder)
        (folder / "pytorch_model").mkdir(parents=True, exist_ok=True)
        (folder / "pytorch_model" / f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt").write_bytes(bytes([rank]) * 100)
        (folder / f"random_states_{rank}.pkl").write_bytes(bytes([rank]) * 10)
        if rank == 0:
            (folder / "scheduler.bin").write_bytes(b"s")

    accelerator.save_state = fake_save_state
    tmp_dir = protocol.tmp_path_for(ckpt.folder / "step_9")
    checkpoint.protocol.sha256_file = spying_sha
    target = ckpt.save(9, {"epoch": 1}, best_step=None)
    checkpoint.protocol.sha256_file = real_sha
    hashed = [h for h in hashed if not h.endswith(checkpoint.TRAIN_STATE_NAME)]
    result = {"own_listing": own_listing, "latest": path.name, "train_state_step": state["global_step"],
              "notes": ckpt.messages, "hashed": hashed}  # fmt: skip
    if rank == 0:
        result["problems"] = protocol.verify(target, check_hashes=True)
        result["manifest_files"] = sorted(protocol.read_manifest(target)["files"])
    (root / f"rank{rank}.json").write_text(json.dumps(result))
    torch.distributed.barrier()


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
