"""Promote of a MindSpore .ckpt (pure Python: safetensors written by us) and of a torch DCP folder (torch)."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.fixtures.mindspore_files import (
    array_value,
    bf16_value,
    ckpt_bytes,
    network,
    write_50_epoch_dir,
)
from tests.fixtures.ops import age_tree
from tui.core import commit
from tui.core.mindspore_ckpt import read_mindspore
from tui.core.mindspore_ckpt.export import verify
from tui.core.promote import PromoteError, promote
from tui.core.safetensors_header import read_header
from tui.core.scan import scan


@pytest.fixture
def fifty(tmp_path):
    paths = write_50_epoch_dir(tmp_path)
    age_tree(tmp_path)
    return tmp_path, paths


def test_mindspore_network_exported_as_safetensors_without_torch(fifty):
    root, paths = fifty
    result = promote(root, paths["fer-50"])  # no converter: the app's call
    target = root / "checkpoints_50epoch" / "promoted" / "fer-50_449"
    assert result.target == str(target) and result.conversion == "mindspore"
    assert result.verified is True and result.problems == []
    assert result.files == ["model.safetensors"]
    manifest = json.loads((target / "ckpt_manifest.json").read_text())
    assert manifest["kind"] == "promoted" and manifest["source"] == "checkpoints_50epoch/fer-50_449.ckpt"
    assert manifest["step"] is None  # the scan's infos were not given; the source has no manifest
    exported = load_file(str(target / "model.safetensors"))
    assert list(exported) == list(network(50))  # names and order kept, optimizer state dropped
    for name, array in network(50).items():
        np.testing.assert_array_equal(exported[name], array)
    assert commit.verify(target, check_hashes=True) == []
    got = {i.path: i for i in scan(root)}
    export = got["checkpoints_50epoch/promoted/fer-50_449"]
    assert export.kind == "safetensors-file" and export.promoted and export.complete
    age_tree(root)
    with pytest.raises(PromoteError, match="already a promoted export"):
        promote(root, target)


def test_step_and_epoch_of_the_scan_go_into_the_manifest(fifty):
    root, paths = fifty
    infos = scan(root)
    result = promote(root, paths["fer-47"], infos=infos)
    assert result.manifest["step"] == 47 * 449


def test_bf16_and_integer_tensors_keep_their_bytes(tmp_path):
    values = [
        bf16_value("w", np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)),
        array_value("ids", np.arange(5, dtype=np.int64)),
        array_value("flag", np.array([True, False, True])),
        array_value("moment1.w", np.zeros((3, 4), np.float32)),
    ]
    src = tmp_path / "m.ckpt"
    src.write_bytes(ckpt_bytes(values))
    age_tree(tmp_path)
    result = promote(tmp_path, src, tmp_path / "out")
    header = read_header(tmp_path / "out" / "model.safetensors")
    assert {n: (t.dtype, t.shape) for n, t in header.tensors.items()} == {
        "w": ("BF16", (3, 4)),
        "ids": ("I64", (5,)),
        "flag": ("BOOL", (3,)),
    }
    assert header.metadata == {"format": "pt", "source_format": "mindspore"} and header.problems == []
    data = (tmp_path / "out" / "model.safetensors").read_bytes()[8 + header.header_len :]
    assert data == values[0][3] + values[1][3] + values[2][3]
    assert result.verified


def test_verify_catches_a_changed_byte(fifty):
    root, paths = fifty
    result = promote(root, paths["fer-49"])
    exported = root / "checkpoints_50epoch" / "promoted" / "fer-49_449" / "model.safetensors"
    assert result.verified
    data = bytearray(exported.read_bytes())
    data[-1] ^= 0xFF
    os.chmod(exported, 0o644)
    exported.write_bytes(bytes(data))
    assert verify(read_mindspore(paths["fer-49"]), paths["fer-49"], exported) == (
        "model.safetensors: the bytes of tensor 'fc2.bias' differ from fer-49_449.ckpt"
    )


def test_broken_encrypted_and_non_mindspore_files_are_refused(fifty, tmp_path):
    root, paths = fifty
    with pytest.raises(PromoteError, match=r"cannot be exported \(best_model.ckpt: truncated"):
        promote(root, paths["truncated_best"])
    enc = root / "enc.ckpt"
    enc.write_bytes(b"\xd8\x5e\x3a\x7f" + os.urandom(64))
    age_tree(root)
    with pytest.raises(PromoteError, match=r"cannot be exported \(encrypted MindSpore checkpoint"):
        promote(root, enc)
    other = root / "model.pt"
    other.write_bytes(pickle.dumps({"a": 1}))
    age_tree(root)
    with pytest.raises(PromoteError, match="not a checkpoint folder or a MindSpore .ckpt file"):
        promote(root, other)
    assert not (root / "promoted").exists() and not (root / "checkpoints_50epoch_copy" / "promoted").exists()


# --- torch DCP ---------------------------------------------------------------------------------------------


def test_dcp_consolidated_and_verified(dcp_saved, tmp_path):
    import torch
    from safetensors.torch import load_file as load_torch

    from tests.fixtures.dcp_writer import tensors
    from tui import convert

    shutil.copytree(dcp_saved[2], tmp_path / "run" / "step-100")
    age_tree(tmp_path)
    result = promote(tmp_path, tmp_path / "run" / "step-100", convert=convert, verify_reload=True)
    assert result.conversion == "dcp" and result.verified is True and result.problems == []
    exported = load_torch(str(tmp_path / "run" / "promoted" / "step-100" / "model.safetensors"))
    expected = {k: v for k, v in tensors().items() if not k.startswith("optim.")}
    assert set(exported) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(exported[name], tensor), name


def test_dcp_needs_the_cli_in_the_app_and_refuses_broken_or_hostile_folders(dcp_saved, tmp_path):
    from tui import convert

    folder = tmp_path / "step-100"
    shutil.copytree(dcp_saved[2], folder)
    age_tree(tmp_path)
    with pytest.raises(
        PromoteError, match=r"needs a dcp conversion with torch; run `ckpt-tui promote --root \S+ \S+/step-100`"
    ):
        promote(tmp_path, folder)
    (folder / "__1_0.distcp").unlink()
    age_tree(tmp_path)
    with pytest.raises(PromoteError, match="cannot be exported \\(missing .distcp file"):
        promote(tmp_path, folder, convert=convert)
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (folder / ".metadata").write_bytes(pickle.dumps(Evil(), protocol=2))
    age_tree(tmp_path)
    with pytest.raises(PromoteError, match="unsafe pickle global posix.system"):
        promote(tmp_path, folder, convert=convert)
    assert not marker.exists() and not (tmp_path / "promoted").exists()
