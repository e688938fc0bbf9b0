"""summarize_weights / tensor_table on real HF and safetensors output, and on broken indexes."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.fixtures.readers import numel, st_bytes, st_header
from tui.core.weights import summarize_weights, tensor_table

try:
    import torch
    from safetensors import torch as safetensors_torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch + safetensors (the train extra)")

ST_NAMES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
            "uint8": "U8", "bool": "BOOL", "float64": "F64"}  # fmt: skip


def truth_of(tensors) -> tuple[int, dict[str, int]]:
    per: dict[str, int] = {}
    for t in tensors:
        name = ST_NAMES[str(t.dtype).removeprefix("torch.")]
        per[name] = per.get(name, 0) + t.numel()
    return sum(per.values()), per


@pytest.fixture(scope="module")
def hf_sharded(tmp_path_factory):
    """A tiny BERT classifier in three dtypes, saved by save_pretrained with max_shard_size="50KB"."""
    transformers = pytest.importorskip("transformers")
    if torch is None:
        pytest.skip("needs torch")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=400,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=3,
    )
    model = transformers.BertForSequenceClassification(cfg)
    model.bert.embeddings.to(torch.bfloat16)
    model.bert.encoder.layer[0].to(torch.float16)
    truth_params = {k: v.detach().clone() for k, v in model.state_dict().items()}
    folder = tmp_path_factory.mktemp("hf") / "bert_fold_0"
    model.save_pretrained(folder, max_shard_size="50KB")
    return folder, truth_params


@needs_torch
def test_hf_sharded_folder_matches_torch_truth(hf_sharded):
    folder, state_dict = hf_sharded
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard_names = sorted(set(index["weight_map"].values()))
    assert len(shard_names) >= 3, "the fixture should produce several shards"

    s = summarize_weights(folder)

    assert s.problems == []
    assert s.index == "model.safetensors.index.json"
    assert s.shards == len(shard_names) == len(s.files)
    assert [f["path"] for f in s.files] == shard_names
    # truth 1: the tensors torch loads back from the shards
    loaded = {}
    for name in shard_names:
        loaded.update(safetensors_torch.load_file(str(folder / name)))
    params, per_dtype = truth_of(loaded.values())
    assert s.tensors == len(loaded) == len(index["weight_map"])
    assert s.parameters == params
    assert s.dtypes == per_dtype
    assert set(per_dtype) == {"F32", "F16", "BF16"}
    # truth 2: the model that was saved
    assert truth_of(state_dict.values()) == (params, per_dtype)
    assert s.bytes == sum(t.numel() * t.element_size() for t in loaded.values())
    assert s.file_bytes == sum((folder / n).stat().st_size for n in shard_names)
    assert s.module_prefix == ""
    assert s.modules == {
        "bert": sum(t.numel() for k, t in loaded.items() if k.startswith("bert.")),
        "classifier": sum(t.numel() for k, t in loaded.items() if k.startswith("classifier.")),
    }
    biggest = max(loaded.items(), key=lambda kv: kv[1].numel())
    assert s.largest[0] == {
        "name": biggest[0],
        "dtype": "BF16",
        "shape": list(biggest[1].shape),
        "parameters": biggest[1].numel(),
    }
    assert len(s.largest) == 10
    assert [x["parameters"] for x in s.largest] == sorted((x["parameters"] for x in s.largest), reverse=True)
    json.dumps(s.to_json())  # serializable as is

    table = tensor_table(folder)
    assert table == {k: (ST_NAMES[str(t.dtype)[6:]], tuple(t.shape)) for k, t in loaded.items()}


@needs_torch
def test_hf_sharded_missing_shard_and_index_disagreements(hf_sharded, tmp_path):
    src, _ = hf_sharded
    folder = tmp_path / "copy"
    shutil.copytree(src, folder)
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    shards = sorted(set(index["weight_map"].values()))
    os.remove(folder / shards[-1])
    dropped = next(iter(index["weight_map"]))
    first_shard = index["weight_map"][dropped]
    del index["weight_map"][dropped]  # in a shard, not in the index
    index["weight_map"]["ghost.weight"] = first_shard  # in the index, not in its shard
    index_path.write_text(json.dumps(index))

    s = summarize_weights(folder)

    text = "\n".join(s.problems)
    assert f"missing shard named in index: {shards[-1]}" in s.problems
    assert "listed in model.safetensors.index.json but absent from their shard: 'ghost.weight'" in text
    assert f"in the shards but not listed in model.safetensors.index.json: {dropped!r}" in text
    assert s.shards == len(shards)
    assert s.tensors > 0 and s.parameters > 0  # what is readable is still counted


@needs_torch
def test_single_file_save_file_with_i64(tmp_path):
    tensors = {
        "model.embed.weight": torch.randn(20, 8),
        "model.head.weight": torch.randn(3, 8).half(),
        "model.head.bias": torch.zeros(3, dtype=torch.bfloat16),
        "model.position_ids": torch.arange(16, dtype=torch.int64).unsqueeze(0),
    }
    folder = tmp_path / "m"
    folder.mkdir()
    safetensors_torch.save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    params, per = truth_of(tensors.values())

    for arg in (folder, folder / "model.safetensors", [folder / "model.safetensors"], str(folder)):
        s = summarize_weights(arg)
        assert s.problems == []
        assert (s.shards, s.tensors, s.parameters, s.dtypes) == (1, 4, params, per)
        assert s.index is None and s.metadata == {"format": "pt"}
    # every tensor shares "model.": it is stripped before grouping
    assert s.module_prefix == "model."
    assert s.modules == {"embed": 160, "position_ids": 16, "head": 27}


def _write(path, tensors, **kw):
    path.write_bytes(st_bytes(tensors, **kw))


def test_adapter_folder_and_generic_index_name(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    lora = {
        f"base_model.model.bert.encoder.layer.{i}.attention.self.{m}.lora_{ab}.weight": ("F32", [4, 8])
        for i in range(2)
        for m in ("query", "value")
        for ab in "AB"
    }
    _write(adapter / "adapter_model.safetensors", lora)
    s = summarize_weights(adapter)
    assert s.problems == [] and s.tensors == 8 and s.parameters == 8 * 32
    assert s.module_prefix == "base_model.model.bert.encoder.layer."
    assert s.modules == {"0": 128, "1": 128}

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    _write(sharded / "adapter_model-00001-of-00002.safetensors", {"a.w": ("F16", [3])})
    _write(sharded / "adapter_model-00002-of-00002.safetensors", {"b.w": ("F16", [5])})
    (sharded / "adapter_model.safetensors.index.json").write_text(
        json.dumps(
            {
                "metadata": {"total_size": 16},
                "weight_map": {
                    "a.w": "adapter_model-00001-of-00002.safetensors",
                    "b.w": "adapter_model-00002-of-00002.safetensors",
                },
            }
        )
    )
    s = summarize_weights(sharded)
    assert s.problems == [] and s.index == "adapter_model.safetensors.index.json"
    assert (s.shards, s.tensors, s.parameters, s.dtypes) == (2, 2, 8, {"F16": 8})
    assert s.index_metadata == {"total_size": 16}
    # the same through index_file=, and through the index path itself
    for s2 in (
        summarize_weights(tmp_path, index_file=sharded / "adapter_model.safetensors.index.json"),
        summarize_weights(sharded / "adapter_model.safetensors.index.json"),
    ):
        assert (s2.shards, s2.tensors, s2.parameters) == (2, 2, 8) and s2.problems == []


def test_model_index_preferred_and_model_safetensors_preferred(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    _write(folder / "model.safetensors", {"x": ("F32", [10])})
    _write(folder / "adapter_model.safetensors", {"y": ("F32", [3])})
    s = summarize_weights(folder)
    assert [f["path"] for f in s.files] == ["model.safetensors"] and s.parameters == 10


def test_index_problems(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    _write(folder / "model-00001-of-00001.safetensors", {"a": ("F32", [2])})
    idx = folder / "model.safetensors.index.json"

    idx.write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00001.safetensors", "b": "../../etc/passwd"}})
    )
    s = summarize_weights(folder)
    assert any("shard names outside the folder ignored" in p and "etc/passwd" in p for p in s.problems)
    assert s.tensors == 1

    idx.write_text("{not json")
    s = summarize_weights(folder)
    assert any("index is not valid JSON" in p for p in s.problems)
    assert s.tensors == 1, "falls back to the shards on disk"

    idx.write_text(json.dumps({"weight_map": ["a"]}))
    s = summarize_weights(folder)
    assert any("no valid weight_map" in p for p in s.problems) and s.tensors == 1

    idx.write_bytes(b"")
    assert any("zero-byte index" in p for p in summarize_weights(folder).problems)


def test_orphan_shards_without_index(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    _write(folder / "model-00001-of-00003.safetensors", {"a": ("F32", [2])})
    _write(folder / "model-00003-of-00003.safetensors", {"c": ("F32", [2])})
    s = summarize_weights(folder)
    assert s.tensors == 2 and s.shards == 2
    (problem,) = s.problems
    assert "no model.safetensors.index.json" in problem and "shard(s) 2 of 3 missing" in problem


def test_tensor_in_two_shards(tmp_path):
    a = tmp_path / "model-00001-of-00002.safetensors"
    b = tmp_path / "model-00002-of-00002.safetensors"
    _write(a, {"w": ("F32", [2])})
    _write(b, {"w": ("F32", [2])})
    weight_map = {"w": a.name}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    s = summarize_weights(tmp_path)
    assert s.shards == 1 and s.tensors == 1  # the index names one shard
    weight_map["v"] = b.name
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    s = summarize_weights(tmp_path)
    assert s.tensors == 1 and any("stored in two shards" in p for p in s.problems)
    # separate files given together (accelerate: model.safetensors, model_1.safetensors) all count
    m0, m1 = tmp_path / "model.safetensors", tmp_path / "model_1.safetensors"
    _write(m0, {"w": ("F32", [2])})
    _write(m1, {"w": ("F32", [3])})
    s = summarize_weights([m0, m1])
    assert (s.tensors, s.parameters, s.problems) == (2, 5, [])


def test_zero_byte_and_broken_files_become_problems(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    s = summarize_weights(folder)
    assert s.files[0]["ok"] is False and s.files[0]["size_bytes"] == 0
    assert any("zero-byte" in p for p in s.problems)
    (folder / "model.safetensors").write_bytes(st_bytes({"w": ("F32", [100])})[:-8])
    s = summarize_weights(folder)
    assert any("truncated" in p for p in s.problems)
    assert s.parameters == 100  # the header is intact: it still says what should be there


@pytest.mark.parametrize(
    "arg",
    [None, 123, "/nonexistent/path/x.safetensors", "", b"bytes", object(), ["/nope/a.safetensors"]],
)
def test_never_raises_on_nonsense(arg):
    s = summarize_weights(arg)
    assert s.problems
    json.dumps(s.to_json())
    assert tensor_table(arg) == {}


def test_empty_folder_and_directory_named_like_weights(tmp_path):
    assert summarize_weights(tmp_path).problems == ["no .safetensors weights found"]
    (tmp_path / "model.safetensors").mkdir()
    s = summarize_weights(tmp_path / "model.safetensors")
    assert s.problems == ["no .safetensors weights found"]  # an empty folder, as it happens
    s = summarize_weights([tmp_path / "model.safetensors"])
    assert any("not a regular file" in p for p in s.problems)


def test_module_prefix_rules():
    from tui.core.weights import module_counts

    def modules(*pairs):
        return module_counts([n for n, _ in pairs], [k for _, k in pairs])

    assert modules(("deberta.embeddings.w", 2), ("deberta.encoder.layer.0.w", 3)) == (
        "deberta.",
        {"encoder": 3, "embeddings": 2},
    )
    assert modules(("w", 1)) == ("", {"w": 1})
    assert modules(("model.w", 1)) == ("model.", {"w": 1})
    assert modules(("model.w", 1), ("model", 2)) == ("", {"model": 3})  # "model" has nothing left
    assert modules(("layers.0.a", 1), ("layers.0.b", 2)) == ("layers.", {"0": 3})  # not past an index
    assert modules(("a.b.x", 1), ("a.bc.y", 2)) == ("a.", {"bc": 2, "b": 1})  # components, not characters
    assert modules(("a.b", 1), ("a.b.c", 2)) == ("a.", {"b": 3})
    assert modules() == ("", {})


def test_sum_over_header_numbers(tmp_path):
    spec = {f"blk.{i}.w": ("BF16" if i % 2 else "F32", [i + 1, 3]) for i in range(12)}
    (tmp_path / "model.safetensors").write_bytes(st_bytes(header=st_header(spec)))
    s = summarize_weights(tmp_path)
    assert s.parameters == sum(numel(shape) for _, shape in spec.values())
    assert s.module_prefix == "blk." and len(s.modules) == 12  # one module per block index
    assert s.modules["11"] == 36
    assert [x["name"] for x in s.largest[:2]] == ["blk.11.w", "blk.10.w"]


@pytest.mark.parametrize(
    "names",
    [
        ["model.safetensors", "adapter_model.safetensors"],
        ["model-00001-of-00003.safetensors", "model-00003-of-00003.safetensors"],
        ["a.safetensors", "b.safetensors", "notes.txt"],
        ["model-00001-of-00001.safetensors", "model.safetensors.index.json"],
        ["adapter_model.safetensors", "adapter_model.safetensors.index.json"],
        ["config.json"],
    ],
)
def test_a_folder_listed_by_the_caller_summarises_as_one_listed_here(tmp_path, names):
    """The scan hands over the file names its walk saw; the summary must be the one of a fresh listing."""
    for i, name in enumerate(names):
        if name.endswith(".safetensors"):
            _write(tmp_path / name, {f"t{i}": ("F32", [i + 2])})
        elif name.endswith(".index.json"):
            shard = names[0]
            (tmp_path / name).write_text(json.dumps({"weight_map": {"t0": shard, "gone": "missing.safetensors"}}))
        else:
            (tmp_path / name).write_text("{}")
    (tmp_path / "sub.safetensors").mkdir()  # a folder is not among the names a listing gives
    fresh = summarize_weights(tmp_path).to_json()
    assert summarize_weights(tmp_path, listing=set(names)).to_json() == fresh
    assert summarize_weights(str(tmp_path), listing=list(reversed(names))).to_json() == fresh


def _digest_by_definition(entries):
    """What ``weights._digest`` must give, written the plain way (every entry through the key)."""
    import heapq

    dtypes: dict[str, int] = {}
    for e in entries:
        dtypes[e[1]] = dtypes.get(e[1], 0) + e[5]
    top = heapq.nsmallest(10, entries, key=lambda e: (-e[5], e[0]))
    return (
        [e[0] for e in entries], [e[5] for e in entries], sum(e[5] for e in entries),
        sum(e[4] - e[3] for e in entries), dtypes, [((-e[5], e[0]), e[0], e[1], e[2], e[5]) for e in top],
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(40))
def test_digest_matches_its_definition_with_ties_at_the_cut(seed):
    # the largest are chosen among the entries at least as large as the 10th largest: ties there, one
    # dtype or several, fewer entries than LARGEST, none at all
    import random

    from tui.core.weights import _digest

    rng = random.Random(seed)
    entries, offset = [], 0
    for i in range(rng.choice([0, 3, 10, 11, 40, 200])):
        numel = rng.choice([1, 4, 4, 4, 16, 64, 64])
        dtype = rng.choice(["F32"] if seed % 2 else ["F32", "BF16", "I64"])
        entries.append((f"t{rng.randrange(10**6)}.{i}", dtype, [numel], offset, offset + 4 * numel, numel))
        offset += 4 * numel
    assert _digest(entries) == _digest_by_definition(entries)


def test_an_index_that_matches_its_shards_has_no_problems_and_one_that_does_not_is_named(tmp_path):
    # the exact-match shortcut must not hide a tensor listed under the wrong shard
    names = {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}
    for name, shard in names.items():
        (tmp_path / shard).write_bytes(st_bytes({name: ("F32", (2,))}))
    index = {"metadata": {}, "weight_map": names}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert summarize_weights(tmp_path).problems == []
    index["weight_map"] = {"a.weight": names["b.weight"], "b.weight": names["a.weight"]}  # swapped
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert any("different shard" in p and "a.weight" in p for p in summarize_weights(tmp_path).problems)
