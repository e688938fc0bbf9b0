"""promote reads only regular files reached without leaving ROOT (docs/SECURITY.md, "Filesystem").

On a shared disk another user can plant ``model.safetensors -> ~victim/.ssh/id_rsa`` (or a FIFO, or a link
to /dev/zero) in a checkpoint: promoting it must refuse with one line naming the file, and write nothing,
instead of copying the victim's file into a shared export or hanging. A link that stays inside ROOT is
followed. The same holds for ``inspect --verify`` (manifest entries) and the conversions' source folders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.core.test_bounded_input import within
from tests.core.test_promote import hf_model
from tests.fixtures import synthetic
from tests.fixtures.ops import age_tree, tree_hashes, write_file
from tui.convert import ConvertError
from tui.convert.lora import base_model_path
from tui.core import commit
from tui.core.files import read_refusal
from tui.core.inspect import inspect_path
from tui.core.promote import PromoteError, promote

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="symlinks, FIFOs and /dev/zero are POSIX")

SOURCE = "run/checkpoint-6"


@pytest.fixture
def tree(tmp_path):
    """ROOT with one promotable checkpoint, and someone else's folder outside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_file(root / "run" / "run.json", json.dumps({"format": "ckpt-tui/run/1"}))
    hf_model(root / "run" / "checkpoint-6")
    outside.mkdir()
    return root, outside


def _plant_outside(root: Path, outside: Path, name: str) -> Path:
    """Move the checkpoint's own ``name`` out of ROOT and leave a link to it: the file is valid, only
    where it lies is wrong (so only the link can be why promote refuses)."""
    inside = root / SOURCE / name
    moved = outside / name
    os.replace(inside, moved)
    inside.symlink_to(moved)
    return moved


def _nothing_written(root: Path, before: dict[str, str]) -> None:
    assert tree_hashes(root) == before  # no export, no temp folder, no `promoted/` left behind


@pytest.mark.parametrize(
    "name",
    ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "trainer_state.json"],
)
def test_a_source_file_linked_out_of_root_is_refused_and_nothing_written(tree, name):
    root, outside = tree
    _plant_outside(root, outside, name)
    age_tree(root.parent)
    before, theirs = tree_hashes(root), tree_hashes(outside)
    with pytest.raises(PromoteError, match=rf"^{SOURCE}/{name}: is a symlink leading outside ROOT .*nothing exported$"):
        promote(root, SOURCE)
    _nothing_written(root, before)
    assert tree_hashes(outside) == theirs


def test_an_indexed_shard_or_a_config_found_upwards_linked_out_is_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_file(root / "run" / "run.json", json.dumps({"format": "ckpt-tui/run/1"}))
    hf_model(root / "run" / "checkpoint-6", shards=2)
    outside.mkdir()
    shard = "model-00002-of-00002.safetensors"
    _plant_outside(root, outside, shard)
    age_tree(tmp_path)
    with pytest.raises(PromoteError, match=f"{shard}: is a symlink leading outside ROOT"):
        promote(root, SOURCE)
    (root / SOURCE / shard).unlink()
    os.replace(outside / shard, root / SOURCE / shard)
    # The config comes from the run folder, which links it out of ROOT.
    os.replace(root / SOURCE / "config.json", outside / "config.json")
    (root / "run" / "config.json").symlink_to(outside / "config.json")
    age_tree(tmp_path)
    with pytest.raises(PromoteError, match=r"^run/config.json: is a symlink leading outside ROOT"):
        promote(root, SOURCE)


def test_links_that_stay_inside_root_are_followed(tree):
    root, _ = tree
    shared = root / "shared"
    shared.mkdir()
    for name in ("model.safetensors", "tokenizer.json"):
        os.replace(root / SOURCE / name, shared / name)
        (root / SOURCE / name).symlink_to(Path("..", "..", "shared", name))
    age_tree(root.parent)
    result = promote(root, SOURCE)
    assert result.problems == [] and "model.safetensors" in result.files
    exported = Path(result.target) / "model.safetensors"
    assert not exported.is_symlink() and exported.read_bytes() == (shared / "model.safetensors").read_bytes()


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "trainer_state.json", "generation_config.json"])
@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_a_fifo_or_device_in_the_source_is_refused_without_hanging(tree, name, special):
    root, _ = tree
    path = root / SOURCE / name
    path.unlink(missing_ok=True)
    os.mkfifo(path) if special == "fifo" else path.symlink_to(special)
    age_tree(root.parent)
    before = tree_hashes(root) if special != "fifo" else None
    why = "is a FIFO, not a regular file" if special == "fifo" else "is a symlink leading outside ROOT"
    with pytest.raises(PromoteError, match=rf"^{SOURCE}/{name}: {why}"):
        within(10, promote, root, SOURCE)
    assert not (root / "run" / "promoted").exists()
    if before is not None:  # tree_hashes would block reading the FIFO itself
        _nothing_written(root, before)


# --- conversions: refused before torch is needed, so the app sees the same refusal ------------------------


def _zero(source: Path, outside: Path, link_folder: bool) -> None:
    synthetic.write_config(source)
    tag = synthetic.write_deepspeed(source, 5, stage=2, world_size=1)
    if link_folder:  # the whole tag folder lives elsewhere
        os.replace(tag, outside / tag.name)
        tag.symlink_to(outside / tag.name)
    else:
        shard = sorted(tag.iterdir())[0]
        os.replace(shard, outside / shard.name)
        shard.symlink_to(outside / shard.name)


def _lora(source: Path, outside: Path) -> None:
    synthetic.write_peft_adapter(source, base_model="base")
    os.replace(source / "adapter_model.safetensors", outside / "adapter_model.safetensors")
    (source / "adapter_model.safetensors").symlink_to(outside / "adapter_model.safetensors")


def _bin(source: Path, outside: Path) -> None:
    synthetic.write_config(source)
    write_file(outside / "pytorch_model.bin", b"\x80\x02}q\x00.")
    (source / "pytorch_model.bin").symlink_to(outside / "pytorch_model.bin")


def _dcp(source: Path, outside: Path) -> None:
    write_file(source / ".metadata", b"\x80\x02}q\x00.")
    write_file(outside / "__0_0.distcp", b"x")
    (source / "__0_0.distcp").symlink_to(outside / "__0_0.distcp")


@pytest.mark.parametrize(
    ("build", "conversion"),
    [
        (lambda s, o: _zero(s, o, True), "zero"),
        (lambda s, o: _zero(s, o, False), "zero"),
        (_lora, "lora"),
        (_bin, "bin"),
        (_dcp, "dcp"),
    ],
    ids=["zero-tag-folder", "zero-shard", "lora", "bin", "dcp"],
)
def test_a_conversion_source_linked_out_of_root_is_refused(tmp_path, build, conversion):
    root, outside = tmp_path / "root", tmp_path / "outside"
    source = root / "run" / "ck"
    source.mkdir(parents=True)
    outside.mkdir()
    build(source, outside)
    age_tree(tmp_path)
    with pytest.raises(PromoteError, match=r"is a symlink leading outside ROOT .*nothing exported"):
        promote(root, "run/ck")  # the app's call: refused for the link, not for lacking torch
    assert sorted(p.name for p in (root / "run").iterdir()) == ["ck"]


def test_a_lora_base_named_by_the_adapter_is_read_only_inside_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    synthetic.write_config(outside / "victim-model")
    synthetic.write_peft_adapter(root / "run" / "adapter", base_model=str(outside / "victim-model"))
    with pytest.raises(ConvertError, match=r"victim-model is outside ROOT .*pass --base"):
        base_model_path(root / "run" / "adapter", root)
    synthetic.write_config(root / "base")  # inside ROOT: used; its files linked out are not
    os.symlink(outside / "victim-model" / "config.json", root / "base" / "model.safetensors")
    cfg = root / "run" / "adapter" / "adapter_config.json"
    cfg.write_text(json.dumps(dict(json.loads(cfg.read_text()), base_model_name_or_path="base")))
    with pytest.raises(ConvertError, match=r"model.safetensors is a symlink leading outside ROOT"):
        base_model_path(root / "run" / "adapter", root)
    (root / "base" / "model.safetensors").unlink()
    assert base_model_path(root / "run" / "adapter", root) == root / "base"


# --- manifests: inspect --verify and a committed source ---------------------------------------------------


def test_a_manifest_entry_linked_out_of_root_is_a_problem_and_blocks_promote(tree):
    root, outside = tree
    source, staging = root / SOURCE, root.parent / "staging"
    os.replace(source, staging)
    tmp = commit.begin(source)
    for f in staging.iterdir():
        os.replace(f, tmp / f.name)
    commit.commit(tmp, source, kind="checkpoint")
    _plant_outside(root, outside, "model.safetensors")  # same bytes: size and sha256 still match
    age_tree(root.parent)
    problems = commit.verify(source, check_hashes=True, root=root)
    assert problems == [f"model.safetensors: is a symlink leading outside ROOT (to {outside / 'model.safetensors'}), not read"]
    out = inspect_path(root, source, verify_hashes=True)
    assert problems[0] in out.info.problems
    with pytest.raises(PromoteError, match="not a complete checkpoint .*leading outside ROOT"):
        promote(root, SOURCE)
    assert not (root / "run" / "promoted").exists()


def test_read_refusal_names_the_kind(tmp_path):
    root = tmp_path
    os.mkfifo(root / "f")
    (root / "d").mkdir()
    (root / "z").symlink_to("/dev/zero")
    (root / "ok").write_text("x")
    (root / "in").symlink_to("ok")
    assert read_refusal(root / "f", root) == "is a FIFO, not a regular file; not read"
    assert read_refusal(root / "d", root) == "is a folder, not a regular file; not read"
    assert read_refusal(root / "d", root, folder_ok=True) is None
    assert read_refusal(root / "z", root).startswith("is a symlink leading outside ROOT (to /dev/zero)")
    assert read_refusal(root / "ok", root) is None and read_refusal(root / "in", root) is None
    assert "unreadable" in read_refusal(root / "missing", root)
