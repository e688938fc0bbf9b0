"""torch DCP folders written by torch.distributed.checkpoint.save (one process, and two gloo processes with
sharded DTensors), read by tui.core.dcp without unpickling, and broken in the ways a shared disk breaks them."""

from __future__ import annotations

import collections
import os
import pickle
import shutil
from pathlib import Path

import pytest

from tui.core.dcp import is_dcp_folder, read_dcp

torch = pytest.importorskip("torch")


def copy(src: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "ckpt"
    shutil.copytree(src, dest)
    return dest


def torch_metadata(folder: Path):
    from torch.distributed.checkpoint import FileSystemReader

    return FileSystemReader(str(folder)).read_metadata()


DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64"}


@pytest.mark.parametrize("world", [1, 2])
def test_reader_agrees_with_torchs_own_metadata(dcp_saved, world):
    folder = dcp_saved[world]
    report = read_dcp(folder)
    assert report.problems == [] and report.unsafe_globals == [] and report.version == "1.0.0"
    assert report.verdict == "clean"
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    meta = torch_metadata(folder)
    expected = {k: v for k, v in meta.state_dict_metadata.items() if isinstance(v, TensorStorageMetadata)}
    ours = {t.name: t for t in report.entries}
    assert set(ours) == set(expected)
    for name, md in expected.items():
        assert ours[name].dtype == DTYPES[md.properties.dtype]
        assert ours[name].shape == tuple(md.size)
        assert ours[name].chunks == len(md.chunks) == world
    assert sorted(report.bytes_entries) == ["extra.name", "step"]
    network = {n: t for n, t in ours.items() if not n.startswith("optim.")}
    assert report.tensors == len(network) == 4
    assert report.parameters == sum(t.numel for t in network.values()) == 16 * 8 + 6 * 8 + 6 + 10
    assert report.dtypes == {"F32": 16 * 8 + 6, "BF16": 48, "I64": 10}
    assert report.optimizer_tensors == 2 and report.optimizer_parameters == 96
    assert report.module_prefix == "model." and report.modules == {"embed": 128, "fc": 54, "ids": 10}
    assert [f["path"] for f in report.files] == [f"__{r}_0.distcp" for r in range(world)]
    assert all(f["size_bytes"] == f["needed_bytes"] for f in report.files)
    assert is_dcp_folder(set(os.listdir(folder)))


def test_missing_distcp_file(dcp_saved, tmp_path):
    folder = copy(dcp_saved[2], tmp_path)
    (folder / "__1_0.distcp").unlink()
    report = read_dcp(folder)
    assert report.problems == ["missing .distcp file(s) named in .metadata: '__1_0.distcp' (7 items)"]
    assert report.parameters == 192  # the plan is still readable


def test_truncated_distcp_file(dcp_saved, tmp_path):
    folder = copy(dcp_saved[2], tmp_path)
    path = folder / "__0_0.distcp"
    size = path.stat().st_size
    os.truncate(path, size - 100)
    assert read_dcp(folder).problems == [
        f".distcp file(s) shorter than .metadata says (truncated): '__0_0.distcp' ({size - 100:,} of {size:,} bytes)"
    ]


def test_no_metadata_means_the_save_never_finished(dcp_saved, tmp_path):
    folder = copy(dcp_saved[2], tmp_path)
    (folder / ".metadata").unlink()
    report = read_dcp(folder)
    assert report.tensors is None and len(report.problems) == 1
    assert report.problems[0].startswith("no .metadata beside 2 .distcp file(s): the save did not finish")
    assert is_dcp_folder(set(os.listdir(folder)))


@pytest.mark.parametrize("keep", [0, 100, 1000])
def test_truncated_or_empty_metadata(dcp_saved, tmp_path, keep):
    folder = copy(dcp_saved[1], tmp_path)
    os.truncate(folder / ".metadata", keep)
    report = read_dcp(folder)
    assert len(report.problems) == 1 and report.tensors is None and report.verdict == "not verified"
    want = "zero-byte file" if keep == 0 else "DCP metadata is corrupt or truncated"
    assert want in report.problems[0]


def test_unreferenced_distcp_file(dcp_saved, tmp_path):
    folder = copy(dcp_saved[1], tmp_path)
    shutil.copy(folder / "__0_0.distcp", folder / "__3_0.distcp")
    assert read_dcp(folder).problems == [
        ".distcp file(s) .metadata does not name (left from another save?): '__3_0.distcp'"
    ]


def test_hostile_metadata_is_never_unpickled(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / ".metadata").write_bytes(pickle.dumps(Evil(), protocol=2))
    (folder / "__0_0.distcp").write_bytes(b"x")
    report = read_dcp(folder)
    assert not marker.exists()
    assert report.unsafe_globals == ["posix.system"] and report.verdict == "unsafe"
    assert report.problems[0] == ".metadata: unsafe pickle global posix.system (would run code on load)"
    assert report.problems[1] == ".metadata: not DCP metadata (a pickle of posix.system)"
    from tui.core.scan import scan

    (folder / ".metadata").write_bytes(pickle.dumps({"x": Evil()}, protocol=2)[:-5])  # cut short after the call
    (info,) = [i for i in scan(tmp_path) if i.kind == "torch-dcp"]
    assert info.pickle_scan == "unsafe" and not info.complete and not marker.exists()


def _rewrite_metadata(folder: Path, change) -> None:
    with open(folder / ".metadata", "rb") as f:
        meta = pickle.load(f)  # our own test file, written by torch a moment ago
    change(meta)
    with open(folder / ".metadata", "wb") as f:
        pickle.dump(meta, f)


def test_chunk_problems_from_an_edited_plan(dcp_saved, tmp_path):
    folder = copy(dcp_saved[2], tmp_path)

    def change(meta):
        embed = meta.state_dict_metadata["model.embed.weight"]
        embed.chunks = embed.chunks[:1]  # half the tensor has no chunk
        for index in list(meta.storage_data):
            if index.fqn == "model.fc.bias" and index.index == 1:
                del meta.storage_data[index]  # a chunk without its record
            elif index.fqn == "model.ids" and index.index == 0:
                info = meta.storage_data[index]
                info.length = 10  # less than 5 int64 elements

    _rewrite_metadata(folder, change)
    problems = read_dcp(folder).problems
    assert "entries without a storage record in .metadata: 'model.fc.bias' at [3]" in problems
    assert "storage records smaller than their chunk's data: 'model.ids' at [0] (10 of 40 bytes)" in problems
    assert "tensors whose chunks do not cover them: 'model.embed.weight' (64 of 128 elements)" in problems


def test_not_dcp_metadata(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / ".metadata").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    report = read_dcp(folder)
    assert report.format == "not-dcp"
    assert report.problems == [".metadata: not DCP metadata (a pickle of dict)"]
    assert report.verdict == "not verified"
    # a pickle of allowed globals that is no DCP metadata is not verified either
    (folder / ".metadata").write_bytes(pickle.dumps(collections.OrderedDict(a=1), protocol=4))
    report = read_dcp(folder)
    assert report.globals and not report.unsafe_globals and report.verdict == "not verified", report.problems


def test_scan_inspect_and_diff_of_dcp_folders(dcp_saved, tmp_path):
    from tui.core.dcp import DcpReport
    from tui.core.diff import tensor_table_of as tensor_table
    from tui.core.inspect import inspect_path
    from tui.core.scan import scan

    shutil.copytree(dcp_saved[2], tmp_path / "run" / "step-100")
    shutil.copytree(dcp_saved[1], tmp_path / "run" / "step-200")
    (tmp_path / "run" / "step-200" / "__0_0.distcp").unlink()
    got = {i.path: i for i in scan(tmp_path)}
    assert set(got) == {"run/step-100", "run/step-200"}
    good, broken = got["run/step-100"], got["run/step-200"]
    assert good.kind == "torch-dcp" and good.complete and good.parameters == 192 and good.tensors == 4
    assert good.pickle_scan == "clean" and broken.pickle_scan == "clean"  # .metadata is a pickle torch loads
    assert good.dtypes == {"F32": 134, "BF16": 48, "I64": 10}
    assert broken.kind == "torch-dcp" and not broken.complete
    assert broken.problems == ["missing .distcp file(s) named in .metadata: '__0_0.distcp' (8 items)"]
    result = inspect_path(tmp_path, tmp_path / "run" / "step-100")
    assert isinstance(result.weights, DcpReport) and result.to_json()["weights"]["chunks"] == 12
    assert tensor_table(tmp_path / "run" / "step-100") == tensor_table(tmp_path / "run" / "step-200")
    assert tensor_table(tmp_path / "run" / "step-100")["model.fc.weight"] == ("BF16", (6, 8))


def test_a_repeat_scan_reads_the_metadata_once_until_a_file_changes(dcp_saved, tmp_path, monkeypatch):
    from tui.core import cache, dcp
    from tui.core.scan import scan

    monkeypatch.setattr(cache, "RACY_SECONDS", -1.0)
    reads: list[str] = []
    real = dcp.read_dcp  # integrity imports it when a DCP folder is met
    monkeypatch.setattr(dcp, "read_dcp", lambda folder: reads.append(str(folder)) or real(folder))
    folder = copy(dcp_saved[2], tmp_path)

    def fresh_scan():
        cache.shared().flush()
        cache.configure()
        return [i.to_json() for i in scan(tmp_path)]

    first = fresh_scan()
    assert len(reads) == 1
    assert fresh_scan() == first and len(reads) == 1
    os.truncate(folder / "__1_0.distcp", 100)
    assert "truncated" in fresh_scan()[0]["problems"][0] and len(reads) == 2
    (folder / "__1_0.distcp").unlink()  # a file gone: another key
    assert "missing .distcp" in fresh_scan()[0]["problems"][0] and len(reads) == 3
