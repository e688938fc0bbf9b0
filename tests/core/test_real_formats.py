"""Checkpoints written by the real libraries: every reported number against torch's own count."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def real(tmp_path_factory):
    from tests.fixtures.real import build_real_tree

    return build_real_tree(tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="session")
def infos(real):
    from tui.core.scan import scan

    return {i.path: i for i in scan(real.root)}


def st_truth(folder_or_files):
    from safetensors.torch import load_file

    from tests.fixtures.real import count_tensors

    files = (
        folder_or_files
        if isinstance(folder_or_files, list)
        else sorted(folder_or_files.glob("*.safetensors"))
    )
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    return count_tensors(state)


def test_trainer_checkpoints_best_and_steps(real, infos):
    assert len(real.hf_checkpoints) == 2  # save_total_limit=2 kept the best and the last
    for name in real.hf_checkpoints:
        info = infos[f"hf_out/{name}"]
        state = json.loads((real.hf_output / name / "trainer_state.json").read_text())
        assert info.kind == "hf-checkpoint" and info.complete, info.problems
        assert info.pickle_scan == "clean"  # optimizer.pt, scheduler.pt, rng_state.pth, training_args.bin
        assert info.step == state["global_step"] == int(name.split("-")[1])
        assert info.epoch == pytest.approx(state["epoch"])
        assert info.dtypes == st_truth(real.hf_output / name)
        assert info.best == (name == real.hf_best)
        assert info.run == "hf_out"
    out = infos["hf_out"]
    assert out.kind == "hf-model" and not out.best and out.step is None
    assert out.dtypes == st_truth([real.hf_output / "model.safetensors"])


def test_sharded_bf16_model(real, infos):
    info = infos["sharded_bf16"]
    assert len(list(real.sharded.glob("model-*.safetensors"))) > 1
    assert info.kind == "hf-model" and info.complete
    assert info.dtypes == st_truth(real.sharded) and set(info.dtypes) == {"BF16"}
    from tui.core.inspect import inspect_path

    detail = inspect_path(real.root, real.sharded)
    assert detail.weights is not None and detail.weights.shards == len(
        list(real.sharded.glob("model-*.safetensors"))
    )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(real.sharded))
    assert detail.tokenizer["vocab_size"] == len(tokenizer) == 15
    assert detail.tokenizer["model_max_length"] == tokenizer.model_max_length
    assert detail.config["num_labels"] == 2 and detail.config["id2label"] == {"0": "neg", "1": "pos"}


def test_lora_adapter(real, infos):
    from tui.core.inspect import inspect_path

    info = infos["lora_adapter"]
    assert info.kind == "peft-adapter" and info.dtypes == st_truth(real.adapter)
    cfg = inspect_path(real.root, real.adapter).config
    assert cfg["r"] == 4 and cfg["peft_type"] == "LORA"


def test_lightning_checkpoints(real, infos):
    from tests.fixtures.real import count_tensors

    assert len(real.lightning_files) == 3
    loaded = {}
    for name in real.lightning_files:
        info = infos[f"lightning/{name}"]
        loaded[name] = torch.load(real.lightning_dir / name, weights_only=False)
        truth = count_tensors(loaded[name]["state_dict"])  # the model, not the optimizer state
        assert info.kind == "lightning" and info.complete and info.pickle_scan == "clean", info.problems
        assert info.dtypes == truth and info.parameters == sum(truth.values())
        assert info.tensors == len(loaded[name]["state_dict"])
        (state,) = (v for k, v in loaded[name]["callbacks"].items() if k.startswith("ModelCheckpoint"))
        assert info.metric.name == "val_loss"
        assert info.metric.value == pytest.approx(float(state["current_score"]))
        assert info.step == loaded[name]["global_step"] and info.epoch == loaded[name]["epoch"]
    info = infos["lightning/epoch=1-step=8.ckpt"]
    assert (info.step, info.epoch) == (8, 1.0)
    assert (infos["lightning/last.ckpt"].step, infos["lightning/last.ckpt"].epoch) == (8, 1.0)
    best = Path(
        loaded["last.ckpt"]["callbacks"][next(iter(loaded["last.ckpt"]["callbacks"]))]["best_model_path"]
    ).name
    assert {n for n in real.lightning_files if infos[f"lightning/{n}"].best} == {best}


def test_lightning_best_is_protected_and_prune_ranks_by_the_monitor(real, infos, tmp_path):
    import shutil

    from tui.core.actions import plan_delete, plan_prune
    from tui.core.scan import scan

    # a copy elsewhere: best_model_path is the old absolute path; the last component decides, in this folder
    copy = tmp_path / "copied" / "lightning"
    shutil.copytree(real.lightning_dir, copy)
    found = {i.path: i for i in scan(tmp_path / "copied")}
    best = [p for p, i in found.items() if i.best]
    assert best == ["lightning/epoch=1-step=8.ckpt"]
    clock = lambda: 4e9  # noqa: E731  (files are "quiet")
    plan = plan_delete(tmp_path / "copied", ["lightning/epoch=1-step=8.ckpt"], found.values(), clock=clock)
    assert plan.items == [] and "is the best checkpoint" in plan.refusals[0].reason
    plan = plan_prune(tmp_path / "copied", found.values(), keep=1, metric="val_loss", clock=clock)
    kept = {k.path: k.reason for k in plan.kept}
    assert kept["lightning/epoch=1-step=8.ckpt"].startswith("top 1 by val_loss")
    assert not any("no val_loss value" in r for r in kept.values()), kept
    # epoch=0 is ranked (#2) and neither best nor latest: prune would trash it
    assert [i.path for i in plan.items] == ["lightning/epoch=0-step=4.ckpt"]


def test_accelerate_save_state(real, infos):
    info = infos["acc/step_1"]
    assert info.kind == "accelerate-state" and info.step == 1 and info.complete, info.problems
    assert info.pickle_scan == "clean"  # optimizer.bin, random_states_0.pkl
    assert info.dtypes == st_truth([real.accelerate_state / "model.safetensors"])


def test_torch_save_files(real, infos):
    from tests.fixtures.real import count_tensors

    for name, path in real.pickles.items():
        info = infos[f"pickles/{name}"]
        truth = count_tensors(torch.load(path, weights_only=True))
        assert info.kind == "torch-pickle" and info.complete, (name, info.problems)
        assert info.dtypes == truth, name
        assert info.parameters == sum(truth.values())
    ms = infos["pickles/fer-5_449.ckpt"]
    assert (ms.epoch, ms.epoch_step, ms.step) == (5.0, 449, None)


def test_inspect_every_real_checkpoint_without_problems(real, infos):
    from tui.core.inspect import inspect_path

    for path in infos:
        detail = inspect_path(real.root, real.root / path)
        assert detail.info.complete, (path, detail.info.problems)


def test_every_real_pickle_reads_the_same_through_zipdir_and_a_shared_replay(real, monkeypatch):
    """The scan's own zip directory reader and the replay shared between identical pickles change nothing:
    every pickle file the real libraries wrote gives the report zipfile and a fresh replay give."""
    from tui.core.pickle_scan import formats, scan_pickle
    from tui.core.pickle_scan.sniff import is_pickle_name

    files = sorted(p for p in real.root.rglob("*") if p.is_file() and is_pickle_name(p.name))
    assert len(files) >= 10
    raws = [p.read_bytes() for p in files]
    read = [r for r in raws if r[:2] == b"PK" and formats.read_directory(io.BytesIO(r), len(r)) is not None]
    assert len(read) >= 10  # the real torch zips take zipdir's path
    formats._SHARED.clear()
    fast = [scan_pickle(p).to_json() for p in files + files]
    monkeypatch.setattr(formats, "read_directory", lambda f, size: None)
    monkeypatch.setattr(formats, "_SHARED_MAX_BYTES", -1)
    assert fast == [scan_pickle(p).to_json() for p in files + files]
    assert sum(r["verdict"] == "clean" for r in fast) >= 10
