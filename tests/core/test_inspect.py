"""inspect_path detail panes and the integrity corpus: every broken case is reported, nothing raises,
and a pickle that would run a shell command is only ever read."""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.fixtures import synthetic as s
from tui.core import commit
from tui.core.inspect import NotACheckpoint, deepspeed_layout, find_root, inspect_path
from tui.core.scan import scan


@pytest.mark.parametrize("case", sorted(s.BROKEN))
def test_broken_corpus_is_reported_by_ls_and_inspect(tmp_path, case):
    folder = tmp_path / case
    folder.mkdir()
    word = s.BROKEN[case](folder).lower()
    infos = scan(tmp_path)
    assert infos, case
    broken = [i for i in infos if not i.complete]
    assert broken, (case, [(i.path, i.problems) for i in infos])
    assert any(word in p.lower() for i in broken for p in i.problems), (case, [i.problems for i in broken])
    for info in broken:
        result = inspect_path(tmp_path, tmp_path / info.path)
        assert not result.info.complete
        assert all("\n" not in p for p in result.info.problems)


def test_valid_model_detail(tmp_path):
    counts = s.write_hf_model(tmp_path / "m", shards=3)
    s.write_trainer_state(
        tmp_path / "m",
        global_step=6,
        best_metric=0.9,
        best_global_step=6,
        best_model_checkpoint=".",
        evals={6: 0.9},
    )
    result = inspect_path(tmp_path, tmp_path / "m")
    out = result.to_json()
    assert out["complete"] and out["problems"] == []
    assert out["dtypes"] == counts and out["parameters"] == sum(counts.values())
    assert out["config"]["num_labels"] == 2 and out["config"]["model_type"] == "bert"
    assert out["tokenizer"]["vocab_size"] == 32
    assert out["trainer_state"]["best_model_checkpoint_resolved"] == "m"
    assert out["weights"]["shards"] == 3
    names = {f["path"] for f in out["files"]}
    assert "model.safetensors.index.json" in names and "config.json" in names
    assert out["best"] and out["step"] == 6 and out["metric"] == {"name": "f1_macro", "value": 0.9, "step": 6}


def test_peft_and_deepspeed_config(tmp_path):
    s.write_peft_adapter(tmp_path / "lora", base_model="my-base", r=16)
    cfg = inspect_path(tmp_path, tmp_path / "lora").config
    assert (cfg["base_model"], cfg["r"], cfg["peft_type"]) == ("my-base", 16, "LORA")
    s.write_deepspeed(tmp_path / "z3", 7, stage=3, world_size=4)
    s.write_deepspeed(tmp_path / "z2", 9, stage=2, world_size=2)
    z3 = inspect_path(tmp_path, tmp_path / "z3" / "global_step7")
    assert (z3.config["zero_stage"], z3.config["world_size"], z3.config["latest_is_this"]) == (3, 4, True)
    assert z3.info.complete and z3.info.step == 7
    z2 = deepspeed_layout(tmp_path / "z2" / "global_step9")
    assert (z2["zero_stage"], z2["zero_stage_candidates"], z2["world_size"]) == (None, [1, 2], 2)


def test_nested_adapter_inherits_its_holders_state(tmp_path):
    run = s.write_run(tmp_path, "run1", folds=1, lora=True)
    info = inspect_path(tmp_path, run / "tiny-bert_fold_0" / "adapter").info
    assert (info.kind, info.fold, info.run, info.complete) == ("peft-adapter", 0, "run1", True)
    assert find_root(run / "tiny-bert_fold_0" / "adapter") == tmp_path


def test_verify_checks_hashes_on_demand(tmp_path):
    target = tmp_path / "m"
    with commit.atomic_dir(target, kind="fold-model", fields={"fold": 0}) as tmp:
        s.write_hf_model(tmp, tokenizer=False)
    assert inspect_path(tmp_path, target, verify_hashes=True).info.complete
    cfg = target / "config.json"
    data = cfg.read_bytes()
    cfg.write_bytes(data.replace(b"bert", b"BERT"))  # same size: only the digest can tell
    assert inspect_path(tmp_path, target).info.complete
    bad = inspect_path(tmp_path, target, verify_hashes=True).info
    assert not bad.complete and any("sha256" in p for p in bad.problems)
    assert hashlib.sha256(cfg.read_bytes()).hexdigest()  # file still readable, untouched by us


def test_evil_pickle_is_flagged_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    s.write_evil_pickle(tmp_path / "model.pt", marker)
    s.write_evil_pickle(tmp_path / "ck" / "optimizer.pt", marker)
    s.write_hf_checkpoint(tmp_path / "ck", 2)
    s.write_evil_pickle(tmp_path / "ck" / "rng_state.pth", marker)
    infos = {i.path: i for i in scan(tmp_path)}
    assert any("unsafe" in p for p in infos["model.pt"].problems)
    detail = inspect_path(tmp_path, tmp_path / "ck")  # inspect scans every pickle of the folder
    assert any("rng_state.pth" in p and "unsafe" in p for p in detail.info.problems)
    loose = inspect_path(tmp_path, tmp_path / "model.pt")
    assert loose.weights is not None and loose.weights.unsafe_globals
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "readme.txt").write_text("hi")
    for path in (tmp_path / "notes", tmp_path / "readme.txt", tmp_path / "missing"):
        with pytest.raises(NotACheckpoint) as e:
            inspect_path(tmp_path, path)
        assert "\n" not in str(e.value)


def test_inspect_agrees_with_ls(tmp_path):
    s.make_tree(tmp_path, 10)
    s.write_run(tmp_path, "run1", lora=True, promote_fold=0)
    for info in scan(tmp_path):
        detail = inspect_path(tmp_path, tmp_path / info.path).info
        for key in (
            "path",
            "kind",
            "size_bytes",
            "tensors",
            "parameters",
            "dtypes",
            "step",
            "epoch",
            "fold",
            "best",
            "run",
            "promoted",
            "in_progress",
        ):
            assert getattr(detail, key) == getattr(info, key), (info.path, key)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_named_like_weights_does_not_hang(tmp_path):
    s.write_config(tmp_path / "m")
    os.mkfifo(tmp_path / "m" / "model.safetensors")
    os.mkfifo(tmp_path / "weights.pt")
    infos = {i.path: i for i in scan(tmp_path)}  # returns: a FIFO is never opened for reading
    assert "weights.pt" not in infos and ("m" not in infos or not infos["m"].complete)


def test_inspect_of_a_sharded_model_reads_each_header_and_the_index_once(tmp_path, monkeypatch):
    # the scan's check and the detail pane both want the weights: the second is answered by the cache's
    # memo, never by reading the shards (or their index) again
    from tui.core import safetensors_header, weight_files

    s.write_hf_model(tmp_path / "m", shards=3)
    headers: list[str] = []
    indexes: list[str] = []
    read_header, load_index = safetensors_header._read_header, weight_files._load_index
    monkeypatch.setattr(
        safetensors_header,
        "_read_header",
        lambda path, limit: headers.append(os.fspath(path)) or read_header(path, limit),
    )
    monkeypatch.setattr(weight_files, "_load_index", lambda path: indexes.append(path) or load_index(path))
    result = inspect_path(tmp_path, tmp_path / "m")
    assert result.weights is not None and result.weights.shards == 3 and not result.info.problems
    shards = sorted(p for p in headers if p.endswith(".safetensors"))
    assert len(shards) == 3 and len(set(shards)) == 3, headers
    assert len(indexes) == 1, indexes
