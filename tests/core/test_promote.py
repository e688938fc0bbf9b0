import json
import os

import pytest

from tests.fixtures import synthetic
from tests.fixtures.ops import age_tree, info, tree_hashes, write_file
from tests.fixtures.real import tiny_bert_config
from tui import convert
from tui.core import commit
from tui.core import promote as promote_mod
from tui.core.actions import execute, plan_delete, plan_slim
from tui.core.model import Metric
from tui.core.promote import PromoteError, promote
from tui.core.scan import scan


def hf_model(folder, *, shards=1):
    """A fine-tuned model folder: config, tokenizer, weights (one file or shards + index), trainer state."""
    synthetic.write_config(folder)
    synthetic.write_tokenizer(folder)
    tensors = synthetic.tiny_bert_tensors()
    if shards == 1:
        synthetic.write_safetensors(folder / "model.safetensors", tensors)
    else:
        names = list(tensors)
        weight_map = {}
        for k in range(shards):
            shard = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: tensors[n] for n in names[k::shards]}
            synthetic.write_safetensors(folder / shard, part)
            weight_map.update({n: shard for n in part})
        synthetic.write_json(
            folder / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map}
        )
    synthetic.write_trainer_state(folder, global_step=12, best_metric=0.8, evals={12: 0.8})
    write_file(folder / "optimizer.pt", b"o" * 10)  # training state is not exported
    return folder


@pytest.fixture
def run(tmp_path):
    root = tmp_path / "root"
    run = root / "exp1"
    write_file(run / "run.json", json.dumps({"format": "ckpt-tui/run/1", "run_name": "exp1"}))
    hf_model(run / "bert_fold_0")
    age_tree(root)
    return root, run


def test_promote_copy_is_a_complete_committed_export(run):
    root, run_dir = run
    infos = [
        info(
            "exp1/bert_fold_0",
            kind="hf-model",
            step=12,
            fold=0,
            metric=Metric("f1_macro", 0.8, 12),
            run="exp1",
        )
    ]
    result = promote(root, "exp1/bert_fold_0", infos=infos)
    target = run_dir / "promoted" / "bert_fold_0"
    assert result.target == str(target) and result.conversion is None and result.problems == []
    assert commit.verify(target, check_hashes=True) == []
    manifest = commit.read_manifest(target)
    assert manifest["kind"] == "promoted" and manifest["source"] == "exp1/bert_fold_0"
    assert manifest["step"] == 12 and manifest["fold"] == 0
    assert manifest["metric"] == {"name": "f1_macro", "value": 0.8, "step": 12}
    assert sorted(manifest["files"]) == sorted(
        [
            "model.safetensors",
            "config.json",
            "trainer_state.json",
            *[p.name for p in (run_dir / "bert_fold_0").glob("tok*")],
            *[p.name for p in (run_dir / "bert_fold_0").glob("special*")],
        ]
    )
    assert "optimizer.pt" not in manifest["files"]
    for name, meta in manifest["files"].items():
        assert meta["sha256"] == commit.sha256_file(run_dir / "bert_fold_0" / name)
    assert not any(p.name.startswith(".") for p in (run_dir / "promoted").iterdir())  # no temp left


def test_promote_keeps_shards_and_index(tmp_path):
    root = tmp_path / "root"
    hf_model(root / "m", shards=3)
    age_tree(root)
    result = promote(root, "m", to=tmp_path / "export")
    files = set(commit.read_manifest(tmp_path / "export")["files"])
    assert {f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)} | {
        "model.safetensors.index.json"
    } <= files
    assert result.problems == []


def test_refuses_to_overwrite_unless_asked(run):
    root, run_dir = run
    promote(root, "exp1/bert_fold_0")
    with pytest.raises(PromoteError, match="--overwrite"):
        promote(root, "exp1/bert_fold_0")
    promote(root, "exp1/bert_fold_0", overwrite=True)
    assert commit.verify(run_dir / "promoted" / "bert_fold_0") == []


def test_overwrite_never_replaces_a_folder_that_is_not_an_export(run, tmp_path):
    root, _ = run
    precious = write_file(tmp_path / "mine" / "notes.txt", b"mine")
    with pytest.raises(PromoteError, match="not a promoted export"):
        promote(root, "exp1/bert_fold_0", to=precious.parent, overwrite=True)
    assert precious.read_bytes() == b"mine"


def _others_temp_folders(dest):
    """What another writer (or an attacker) left beside DIR/export: folders with content, and links."""
    write_file(dest / ".export.tmp" / "theirs.bin", b"theirs")
    write_file(dest / ".export.old" / "theirs.bin", b"theirs")
    write_file(dest.parent / "elsewhere" / "keep.bin", b"keep")
    os.symlink(dest.parent / "elsewhere", dest / ".export.old.link")
    return tree_hashes(dest.parent / "elsewhere"), {n: tree_hashes(dest / n) for n in (".export.tmp", ".export.old")}


@pytest.mark.parametrize("overwrite", [False, True])
def test_promote_never_removes_temp_folders_it_did_not_create(run, tmp_path, overwrite):
    root, _ = run
    dest = tmp_path / "dest"
    elsewhere, theirs = _others_temp_folders(dest)
    if overwrite:
        promote(root, "exp1/bert_fold_0", to=dest / "export")
    promote(root, "exp1/bert_fold_0", to=dest / "export", overwrite=overwrite)
    assert commit.verify(dest / "export") == []
    assert {n: tree_hashes(dest / n) for n in theirs} == theirs and tree_hashes(tmp_path / "elsewhere") == elsewhere
    assert sorted(os.listdir(dest)) == [".export.old", ".export.old.link", ".export.tmp", "export"]  # none of ours left


def test_promote_beside_symlinked_temp_names_does_not_crash_or_follow_them(run, tmp_path):
    root, _ = run
    dest, outside = tmp_path / "dest", write_file(tmp_path / "outside" / "keep.bin", b"keep").parent
    dest.mkdir()
    os.symlink(outside, dest / ".export.tmp")
    os.symlink(outside, dest / ".export.old")
    for overwrite in (False, True):
        promote(root, "exp1/bert_fold_0", to=dest / "export", overwrite=overwrite)
    assert commit.verify(dest / "export") == [] and os.listdir(outside) == ["keep.bin"]
    assert (dest / ".export.tmp").is_symlink() and (dest / ".export.old").is_symlink()


def test_a_failed_overwrite_keeps_the_previous_export(run, tmp_path, monkeypatch):
    root, _ = run
    dest = tmp_path / "dest"
    promote(root, "exp1/bert_fold_0", to=dest / "export")
    before = tree_hashes(dest / "export")

    def park_then_fail(tmp, target, *, old, **_):
        os.replace(target, old)  # the previous export is parked aside, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(promote_mod.commit, "commit", park_then_fail)
    with pytest.raises(OSError):
        promote(root, "exp1/bert_fold_0", to=dest / "export", overwrite=True)
    assert tree_hashes(dest / "export") == before and os.listdir(dest) == ["export"]


def test_a_target_reaching_into_the_source_through_a_symlink_is_refused(run, tmp_path):
    root, run_dir = run
    source = run_dir / "bert_fold_0"
    before = tree_hashes(source)
    os.symlink(source, tmp_path / "alias")
    for to in (tmp_path / "alias" / "export", tmp_path / "alias" / "sub" / "export"):
        with pytest.raises(PromoteError, match="inside its source"):
            promote(root, "exp1/bert_fold_0", to=to)
    assert tree_hashes(source) == before


def test_source_outside_root_or_missing_is_refused(run, tmp_path):
    root, _ = run
    hf_model(tmp_path / "elsewhere")
    with pytest.raises(PromoteError, match="outside ROOT"):
        promote(root, tmp_path / "elsewhere")
    with pytest.raises(PromoteError, match="does not exist"):
        promote(root, "exp1/nope")


def test_conversion_without_torch_says_what_to_install(tmp_path, monkeypatch):
    root = tmp_path / "root"
    synthetic.write_config(root / "ds")
    write_file(root / "ds" / "pytorch_model.bin", b"\x80\x02}q\x00.")
    age_tree(root)
    monkeypatch.setattr(promote_mod, "torch_available", lambda: False)
    with pytest.raises(PromoteError, match=r"pip install 'ckpt-tui\[train\]'") as e:
        promote(root, "ds", convert=convert)
    assert "\n" not in str(e.value)
    # Without a converter (the app) the core refuses and names the command that converts.
    with pytest.raises(PromoteError, match=r"run `ckpt-tui promote --root \S+ \S+/ds`"):
        promote(root, "ds")


def test_zero_checkpoint_layouts_are_found(tmp_path):
    step = tmp_path / "step_3"
    write_file(step / "latest", "pytorch_model")
    write_file(step / "pytorch_model" / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt")
    write_file(step / "pytorch_model" / "zero_pp_rank_0_mp_rank_00_model_states.pt")
    assert promote_mod.zero_checkpoint(step) == (step, None)
    assert promote_mod.zero_checkpoint(step / "pytorch_model") == (step, "pytorch_model")
    assert promote_mod.weights_plan(step) == ("zero", [])
    (step / "latest").unlink()
    assert promote_mod.zero_checkpoint(step) == (step, "pytorch_model")


def test_no_weights_and_no_config_are_clear_errors(tmp_path):
    root = tmp_path / "root"
    write_file(root / "empty" / "notes.txt")
    write_file(root / "nocfg" / "model.safetensors")
    age_tree(root)
    with pytest.raises(PromoteError, match="no weights to export"):
        promote(root, "empty")
    with pytest.raises(PromoteError, match="no config.json"):
        promote(root, "nocfg")


def test_in_progress_or_broken_source_is_refused(run):
    root, run_dir = run
    with pytest.raises(PromoteError, match="modified"):
        write_file(run_dir / "bert_fold_0" / "new.bin")
        promote(root, "exp1/bert_fold_0")
    os.remove(run_dir / "bert_fold_0" / "new.bin")
    synthetic.write_manifest(run_dir / "bert_fold_0", kind="fold-model")
    os.remove(run_dir / "bert_fold_0" / "optimizer.pt")
    age_tree(root)
    with pytest.raises(PromoteError, match="not a complete checkpoint"):
        promote(root, "exp1/bert_fold_0")


def test_promoted_source_and_export_are_protected_and_scanned_as_promoted(run):
    from tui.core.scan import scan

    root, _ = run
    promote(root, "exp1/bert_fold_0")
    age_tree(root)
    plan = plan_delete(root, ["exp1/bert_fold_0", "exp1/promoted/bert_fold_0"], [])
    assert plan.items == [] and len(plan.refusals) == 2
    promoted = {i.path for i in scan(root) if i.promoted}
    assert {"exp1/bert_fold_0", "exp1/promoted/bert_fold_0"} <= promoted


def test_default_target_names_never_collide(tmp_path):
    root = tmp_path
    run = root / "r"
    write_file(run / "run.json", "{}")
    a = run / "checkpoints" / "fold_0" / "step_5"
    b = run / "checkpoints" / "fold_1" / "step_5"
    assert promote_mod.default_target(a, root, None) == run / "promoted" / "checkpoints-fold_0-step_5"
    assert promote_mod.default_target(b, root, None) != promote_mod.default_target(a, root, None)
    assert (
        promote_mod.default_target(root / "out" / "checkpoint-9", root, None)
        == root / "out" / "promoted" / "checkpoint-9"
    )


# --- with torch: real conversions, then reload with from_pretrained (slow) ---------------------------------

ZERO_SCRIPT = r'''
"""Write a real single-process DeepSpeed ZeRO checkpoint of a tiny BERT classifier."""
import os, socket, sys
from pathlib import Path

out, stage = Path(sys.argv[1]), int(sys.argv[2])
tag = sys.argv[3] if len(sys.argv) > 3 else None  # accelerate's save_state names it "pytorch_model"
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
import deepspeed
import torch
from transformers import BertConfig, BertForSequenceClassification

torch.manual_seed(0)
config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, num_labels=3)
model = BertForSequenceClassification(config)
expected = {k: v.detach().clone() for k, v in model.state_dict().items()}
deepspeed.init_distributed(dist_backend="gloo")
ds_config = {"train_batch_size": 1, "zero_optimization": {"stage": stage}, "zero_allow_untested_optimizer": True}
engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3), config=ds_config)
engine.save_checkpoint(str(out / "ds_ckpt"), tag=tag)
config.save_pretrained(out)  # the run folder holds the config; the ZeRO folder does not
torch.save(expected, out / "expected_state.pt")
'''


def tiny_config():
    return tiny_bert_config(labels=("a", "b", "c"))


def assert_same_weights(folder, expected):
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True)
    got = model.state_dict()
    for name, tensor in expected.items():
        if name in got:
            torch.testing.assert_close(got[name].float(), tensor.float(), msg=name)
    assert len(set(expected) & set(got)) >= len(got) - 2  # position_ids-like buffers may differ


def real_zero_run(root, *args: str, extensions):
    """Run ZERO_SCRIPT; ``extensions``: where DeepSpeed's compiled ops are kept, shared by the session's
    runs (the private XDG cache of each test would compile them again, minutes on a loaded box)."""
    import subprocess
    import sys

    from tests.subprocess_env import cpu_only

    run_dir = root / "run"
    run_dir.mkdir()
    script = root / "make_zero.py"
    script.write_text(ZERO_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(run_dir), *args], capture_output=True, text=True, timeout=600,
        env=cpu_only({**os.environ, "TORCH_EXTENSIONS_DIR": str(extensions)}),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    synthetic.write_tokenizer(run_dir)
    age_tree(root)
    return root, run_dir


@pytest.fixture(scope="session")
def torch_extensions(tmp_path_factory):
    return tmp_path_factory.mktemp("torch_extensions")


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory, torch_extensions):
    return real_zero_run(tmp_path_factory.mktemp("zero"), "3", extensions=torch_extensions)


@pytest.mark.slow
def test_promote_consolidates_real_zero3_shards_and_reloads(zero3_run, tmp_path):
    import torch

    root, run_dir = zero3_run
    result = promote(root, "run/ds_ckpt", to=tmp_path / "export", convert=convert)
    assert result.conversion == "zero" and result.verified is True and result.problems == []
    files = set(commit.read_manifest(tmp_path / "export")["files"])
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= files
    assert not any("optim" in f or f.endswith(".pt") for f in files)
    assert_same_weights(tmp_path / "export", torch.load(run_dir / "expected_state.pt", weights_only=True))


@pytest.mark.slow
def test_zero3_shards_are_the_only_weights_slim_keeps_them_and_parameters_stay_unknown(zero3_run):
    root, _ = zero3_run
    (tag,) = [i for i in scan(root) if i.kind == "deepspeed"]
    assert tag.parameters is None  # the model states hold ZeRO-3 placeholders
    assert tag.pickle_scan == "clean", tag.problems  # real model and optimizer states: only allowlisted globals
    plan = plan_slim(root, ["run/ds_ckpt"], clock=lambda: 4e9)  # the folder holding `latest` and the tag
    assert plan.items == [] and "ZeRO-3 placeholders" in plan.kept[0].reason


@pytest.mark.slow
def test_fp32_zero2_counts_parameters_slims_its_shards_and_still_promotes(tmp_path, torch_extensions):
    import torch

    root, run_dir = real_zero_run(tmp_path, "2", "pytorch_model", extensions=torch_extensions)
    expected = torch.load(run_dir / "expected_state.pt", weights_only=True)
    (tag,) = [i for i in scan(root) if i.kind == "deepspeed"]
    assert (tag.path, tag.dtypes) == ("run/ds_ckpt/pytorch_model", {"F32": tag.parameters})
    assert tag.parameters == sum(t.numel() for t in expected.values())
    plan = plan_slim(root, ["run/ds_ckpt"], clock=lambda: 4e9)
    assert sorted(i.path.rsplit("/", 1)[-1] for i in plan.items if "optim_states" in i.path) == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    ]
    assert execute(plan).ok
    age_tree(root)
    result = promote(root, "run/ds_ckpt", to=tmp_path / "export", convert=convert)
    assert result.conversion == "zero" and result.verified is True and result.problems == []
    assert_same_weights(tmp_path / "export", expected)


@pytest.mark.slow
def test_promote_copy_reloads_with_from_pretrained(tmp_path):
    from transformers import BertForSequenceClassification

    root = tmp_path / "root"
    model = BertForSequenceClassification(tiny_config())
    model.save_pretrained(str(root / "out" / "checkpoint-3"))
    synthetic.write_tokenizer(root / "out" / "checkpoint-3")
    age_tree(root)
    result = promote(root, "out/checkpoint-3", convert=convert, verify_reload=True)
    assert result.verified is True and result.conversion is None
    assert_same_weights(result.target, model.state_dict())


@pytest.mark.slow
def test_promote_merges_a_lora_adapter_and_reloads(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

    torch.manual_seed(0)
    root = tmp_path / "root"
    base = BertForSequenceClassification(tiny_config())
    base.save_pretrained(str(root / "base"))
    write_file(root / "run" / "run.json", json.dumps({"format": "ckpt-tui/run/1"}))
    fold = root / "run" / "bert_fold_0"
    tiny_config().save_pretrained(str(fold))  # the fine-tuned config (labels) beside the adapter
    synthetic.write_tokenizer(fold)
    peft_model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a trained adapter: merging must change the weights
    peft_model.save_pretrained(str(fold / "adapter"))
    cfg_file = fold / "adapter" / "adapter_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["base_model_name_or_path"] = "base"  # relative: found under ROOT, never downloaded
    cfg_file.write_text(json.dumps(cfg))
    age_tree(root)

    result = promote(root, "run/bert_fold_0/adapter", convert=convert)
    assert result.conversion == "lora" and result.verified is True, result.problems
    assert result.target == str(root / "run" / "promoted" / "bert_fold_0-adapter")
    merged = AutoModelForSequenceClassification.from_pretrained(result.target, local_files_only=True).eval()
    ids = torch.randint(0, 100, (2, 7))
    with torch.no_grad():
        want = peft_model.eval()(input_ids=ids).logits
        got = merged(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_lora_with_a_hub_base_is_a_clear_error(tmp_path):
    root = tmp_path / "root"
    synthetic.write_peft_adapter(root / "adapter", base_model="microsoft/not-on-disk")
    age_tree(root)
    with pytest.raises(PromoteError, match="not a local folder"):
        promote(root, "adapter", convert=convert)


def test_a_just_committed_checkpoint_promotes_but_an_uncommitted_recent_one_waits(tmp_path):
    """The quiet-minute rule guards folders a writer may still fill; a verified committed manifest (written
    last, listing every file's size) says the writer is done, so promote trusts it."""
    root = tmp_path / "root"
    fresh = hf_model(tmp_path / "staging")
    tmp = commit.begin(root / "run" / "checkpoint-5")
    for f in fresh.iterdir():
        os.replace(f, tmp / f.name)
    commit.commit(tmp, root / "run" / "checkpoint-5", kind="checkpoint")  # mtimes: now
    hf_model(root / "run" / "checkpoint-6")  # written now, never committed
    result = promote(root, "run/checkpoint-5")
    assert result.problems == [] and commit.verify(result.target) == []
    with pytest.raises(PromoteError, match="modified 0 s ago"):
        promote(root, "run/checkpoint-6")
    # A committed folder whose files no longer match its manifest is still refused.
    (root / "run" / "checkpoint-5" / "config.json").write_text("{}")
    with pytest.raises(PromoteError, match="not a complete checkpoint"):
        promote(root, "run/checkpoint-5", overwrite=True)


def test_a_planted_promoted_link_does_not_take_the_default_export_out_of_root(run, tmp_path):
    root, run_dir = run
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", run_dir / "promoted")
    with pytest.raises(PromoteError, match="outside ROOT"):
        promote(root, "exp1/bert_fold_0")
    assert os.listdir(tmp_path / "elsewhere") == []


@pytest.mark.parametrize("evil", ["pytorch_model.bin", "global_step3/mp_rank_00_model_states.pt"])
def test_a_torch_conversion_of_a_source_with_an_unsafe_pickle_is_refused_before_loading(tmp_path, evil):
    """zero_to_fp32 loads states with weights_only=False: a pickle not proven clean must never reach it."""
    root = tmp_path / "root"
    source = root / "src"
    synthetic.write_config(source)
    if evil == "pytorch_model.bin":
        synthetic.write_torch_zip(source / "pytorch_model.bin", {"w": 1})
    else:
        synthetic.write_deepspeed(source, 3)
    synthetic.write_evil_pickle(source / evil, tmp_path / "pwned")
    age_tree(root)
    with pytest.raises(PromoteError, match=r"unsafe pickle global posix\.system.*\(pickle scan: unsafe\)"):
        promote(root, "src", to=tmp_path / "export", convert=convert)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "export").exists()
