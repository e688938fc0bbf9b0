"""Step checkpoints (keep-last-K + best, corrupt-newest fallback) and the clean fold model folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.checkpoint import StepCheckpointer, save_fold_model, select_to_keep
from tui.core import commit as protocol

# --- select_to_keep: pure, property-tested ------------------------------------------------------


def _best_of(metrics: list[float], steps: list[int]) -> int | None:
    """Step of the best (max) metric, first one on ties, as a trainer tracking best-so-far records it."""
    best_step, best = None, None
    for step, value in zip(steps, metrics, strict=True):
        if best is None or value > best:
            best_step, best = step, value
    return best_step


@settings(max_examples=300, deadline=None)
@given(
    metrics=st.lists(st.floats(0, 1, allow_nan=False), min_size=0, max_size=30),
    every=st.integers(1, 50),
    keep_last=st.integers(1, 6),
)
def test_select_to_keep_keeps_best_and_exactly_last_k(metrics, every, keep_last):
    steps = [every * (i + 1) for i in range(len(metrics))]
    best = _best_of(metrics, steps)
    kept = select_to_keep(steps, best, keep_last)
    last_k = set(sorted(steps)[-keep_last:])
    assert kept <= set(steps)
    assert last_k <= kept
    if best is not None:
        assert best in kept
    assert kept - last_k <= {best}
    assert len(kept) == min(len(steps), keep_last) + (best is not None and best not in last_k)


@given(st.lists(st.integers(0, 1000), max_size=20), st.integers(0, 2000), st.integers(0, 5))
def test_select_to_keep_never_invents_steps(steps, best, keep_last):
    kept = select_to_keep(steps, best, keep_last)
    assert kept <= set(steps)
    assert (best in kept) == (best in steps)


# --- StepCheckpointer on a real single-process Accelerator ---------------------------------------


def _train_one_step(model, optimizer):
    import torch

    ids = torch.tensor([[2, 4, 11, 3], [2, 7, 15, 3]])
    loss = model(input_ids=ids, labels=torch.tensor([1, 0])).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_step_checkpoints_prune_fallback_and_load(tmp_path, trained_parts):
    import torch

    accelerator, model, optimizer = trained_parts
    ckpt = StepCheckpointer(accelerator, tmp_path, fold=0, keep_last=2)
    saved = {}
    for step in (10, 20, 30, 40):
        _train_one_step(model, optimizer)
        saved[step] = _weights(model)
        ckpt.save(step, {"epoch": 0, "batches_consumed_in_epoch": step}, best_step=10)

    folder = tmp_path / "checkpoints" / "fold_0"
    assert sorted(p.name for p in folder.iterdir()) == ["step_10", "step_30", "step_40"]
    for name in ("step_10", "step_30", "step_40"):
        assert protocol.verify(folder / name, check_hashes=True) == []
        assert protocol.read_manifest(folder / name)["kind"] == "step-checkpoint"

    path, state = ckpt.latest()
    assert path.name == "step_40" and state["global_step"] == 40 and state["fold"] == 0
    assert state["batches_consumed_in_epoch"] == 40 and ckpt.messages == []

    # Corrupt the newest: truncate its weights. Resume must fall back to step_30 and say why.
    weights_file = folder / "step_40" / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:10])
    path, state = ckpt.latest()
    assert path.name == "step_30" and state["global_step"] == 30
    (message,) = ckpt.messages
    assert message.startswith("checkpoint step_40 is incomplete (model.safetensors: 10 bytes on disk, ")
    assert message.endswith("; resuming from step_30") and "\n" not in message

    _train_one_step(model, optimizer)  # move away from the saved weights, then restore them
    assert ckpt.load(path)["global_step"] == 30
    for key, value in _weights(model).items():
        torch.testing.assert_close(value, saved[30][key], rtol=0, atol=0)


@pytest.mark.slow
def test_leftover_temp_folders_removed_and_nothing_foreign_pruned(tmp_path, trained_parts):
    accelerator, model, optimizer = trained_parts
    folder = tmp_path / "checkpoints" / "fold_3"
    (folder / ".step_7.tmp").mkdir(parents=True)
    (folder / "notes").mkdir()
    (folder / "step_2").mkdir()  # never committed: not ours to prune, and never a resume candidate
    other_fold = tmp_path / "checkpoints" / "fold_4" / ".step_1.tmp"
    other_fold.mkdir(parents=True)

    ckpt = StepCheckpointer(accelerator, tmp_path, fold=3, keep_last=1)
    assert not (folder / ".step_7.tmp").exists() and other_fold.exists()
    for step in (5, 6, 8):
        ckpt.save(step, {"epoch": 0}, best_step=None)
    assert sorted(p.name for p in folder.iterdir()) == ["notes", "step_2", "step_8"]
    assert ckpt.latest()[0].name == "step_8"


class _MainOnly:
    """latest() needs no distributed state; this stand-in keeps the tests that use it in milliseconds."""

    is_main_process = True
    num_processes = 1
    project_configuration = None

    def wait_for_everyone(self):
        pass


def test_latest_when_nothing_complete(tmp_path):
    ckpt = StepCheckpointer(_MainOnly(), tmp_path, fold=0, keep_last=2)
    assert ckpt.latest() is None
    broken = tmp_path / "checkpoints" / "fold_0" / "step_4"
    broken.mkdir()
    assert ckpt.latest() is None
    assert ckpt.messages == [
        "checkpoint step_4 is incomplete (no ckpt_manifest.json: never committed (in progress or killed "
        "while writing)); no complete checkpoint left for fold 0"
    ]


def test_latest_skips_a_slimmed_checkpoint(tmp_path):
    """``ckpt-tui slim`` (the real action, not a hand-edited manifest) leaves a step checkpoint that still
    verifies but has no optimizer state: resume must fall back to the previous one and say so in one line."""
    import time

    from tui.core.actions import execute, plan_slim

    def later():  # slim refuses folders modified in the last minute (they may be being written)
        return time.time() + 3600

    ckpt = StepCheckpointer(_MainOnly(), tmp_path, fold=0, keep_last=2)
    folder = tmp_path / "checkpoints" / "fold_0"
    for step in (10, 20):  # the files accelerate.save_state writes for a plain (non-DeepSpeed) run
        with protocol.atomic_dir(
            folder / f"step_{step}", kind="step-checkpoint", fields={"step": step}
        ) as tmp:
            for name in ("model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"):
                (tmp / name).write_bytes(b"x" * 64)
            (tmp / "train_state.json").write_text(json.dumps({"fold": 0, "global_step": step}))
    assert ckpt.latest()[0].name == "step_20"

    result = execute(plan_slim(tmp_path, ["checkpoints/fold_0/step_20"], clock=later))
    assert result.ok and result.done, result.summary
    slimmed = folder / "step_20"
    assert not (slimmed / "optimizer.bin").exists()
    assert protocol.verify(slimmed, check_hashes=True) == []  # still a complete committed folder...
    assert "slimmed" in protocol.read_manifest(slimmed)

    path, state = ckpt.latest(check_hashes=True)  # ...yet not a resume candidate
    assert path.name == "step_10" and state["global_step"] == 10
    assert ckpt.messages == [
        "checkpoint step_20 was slimmed by ckpt-tui slim (no optimizer state left to resume); "
        "resuming from step_10"
    ]

    assert execute(plan_slim(tmp_path, ["checkpoints/fold_0/step_10"], clock=later)).done
    ckpt.messages.clear()
    assert ckpt.latest() is None
    assert len(ckpt.messages) == 2 and all("slimmed" in m and "\n" not in m for m in ckpt.messages)
    assert ckpt.messages[-1].endswith("no complete checkpoint left for fold 0")


def test_keep_last_must_allow_resume(tmp_path):
    with pytest.raises(ValueError, match="keep_last must be >= 1"):
        StepCheckpointer(object(), tmp_path, fold=0, keep_last=0)


# --- save_fold_model -------------------------------------------------------------------------


def _tokenizer_files(tokenizer, tmp_path: Path) -> set[str]:
    out = tmp_path / "tokenizer_only"
    tokenizer.save_pretrained(out)
    return {p.name for p in out.iterdir()}


@pytest.mark.slow
@pytest.mark.parametrize("shard", [False, True])
def test_save_fold_model_writes_exact_committed_hf_folder(tmp_path, trained_parts, shard):
    import torch
    from transformers import AutoModelForSequenceClassification

    from tests.fixtures.ckpt import tiny_tokenizer

    accelerator, model, optimizer = trained_parts
    _train_one_step(model, optimizer)
    expected = _weights(accelerator.unwrap_model(model))
    tokenizer = tiny_tokenizer()
    target = tmp_path / "deberta-tiny_fold_0"
    history = [{"step": 5, "epoch": 0.5, "loss": 0.7}, {"step": 5, "epoch": 0.5, "eval_f1_macro": 0.8}]
    save_fold_model(
        accelerator, model, tokenizer, target,
        trainer_state={"global_step": 5, "epoch": 0.5, "log_history": history},
        metric={"name": "f1_macro", "value": 0.8}, step=5, fold=0,
        max_shard_size="20KB" if shard else "2GB",
    )  # fmt: skip

    weight_files = (
        {
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
        }
        if shard
        else {"model.safetensors"}
    )
    names = {p.name for p in target.iterdir()}
    assert names == {"config.json", "trainer_state.json", "ckpt_manifest.json"} | weight_files | (
        _tokenizer_files(tokenizer, tmp_path)
    )
    assert not protocol.tmp_path_for(target).exists()
    assert protocol.verify(target, check_hashes=True) == []
    manifest = protocol.read_manifest(target)
    assert (manifest["kind"], manifest["step"], manifest["fold"]) == ("fold-model", 5, 0)
    assert manifest["metric"] == {"name": "f1_macro", "value": 0.8}

    state = json.loads((target / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] == "." and state["best_global_step"] == 5
    assert state["best_metric"] == 0.8 and state["global_step"] == 5 and state["log_history"] == history
    config = json.loads((target / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}

    reloaded = AutoModelForSequenceClassification.from_pretrained(target)
    for key, value in reloaded.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)


# --- the safetensors writer behind save_fold_model -------------------------------------------------


def test_write_safetensors_roundtrips_every_dtype_and_hashes_what_it_wrote(tmp_path):
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from trainer.weights_io import write_safetensors

    tensors = {
        "b.f32": torch.randn(3, 5),
        "a.bf16": torch.randn(7).to(torch.bfloat16),
        "c.f16": torch.randn(2, 2, 2).half(),
        "d.i64": torch.arange(6).reshape(2, 3),
        "e.bool": torch.tensor([True, False, True]),
        "f.scalar": torch.tensor(2.5),
        "g.empty": torch.zeros(0, 4),
    }
    path = tmp_path / "w.safetensors"
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = write_safetensors(path, tensors, pool)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = load_file(path)
    assert set(loaded) == set(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor)
    with safe_open(path, "pt") as f:
        assert f.metadata() == {"format": "pt"}
    assert int.from_bytes(path.read_bytes()[:8], "little") % 8 == 0
