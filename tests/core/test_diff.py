"""Config diffs over the whole config.json, tensor-table diffs, and the streamed weight comparison
(checked against torch, which computes the truth in float64)."""

from __future__ import annotations

import pytest

from tests.fixtures import synthetic as syn
from tui.core import weight_compare
from tui.core.diff import ConfigChange, config_changes, diff_checkpoints, flatten, tensor_changes
from tui.core.weight_compare import CompareError, compare_weights


def test_every_differing_key_counts_not_a_summary(tmp_path):
    # The report: two checkpoints differing in intermediate_size, problem_type and use_cache (none of them
    # in the 9-key summary) plus the transformers version that wrote them.
    syn.write_hf_model(tmp_path / "a", config={"intermediate_size": 32, "problem_type": "single_label_classification",
                                                "use_cache": True, "transformers_version": "5.1.0"})  # fmt: skip
    syn.write_hf_model(tmp_path / "b", config={"intermediate_size": 64, "problem_type": "multi_label_classification",
                                                "use_cache": False, "transformers_version": "5.23.0"})  # fmt: skip
    diff = diff_checkpoints(tmp_path / "a", tmp_path / "b")
    assert [c.key for c in diff.config] == ["intermediate_size", "problem_type", "use_cache"]
    assert diff.config[0] == ConfigChange("intermediate_size", 32, 64)
    assert diff.tensors == [] and diff.tensors_compared == len(syn.tiny_bert_tensors()) and diff.problems == []
    noisy = diff_checkpoints(tmp_path / "a", tmp_path / "b", include_noise=True)
    assert "transformers_version" in [c.key for c in noisy.config]


def test_nested_keys_missing_sides_and_number_equality():
    a = {"text_config": {"hidden_size": 8, "rope": {"theta": 1e4}}, "dropout": 1, "flag": True, "ids": [1, 2],
         "extra": {}, "_name_or_path": "/home/x"}  # fmt: skip
    b = {"text_config": {"hidden_size": 16, "rope": {"theta": 1e4}}, "dropout": 1.0, "flag": 1, "ids": [1, 3],
         "new": None, "_name_or_path": "/home/y"}  # fmt: skip
    got = {c.key: c for c in config_changes(a, b)}
    assert set(got) == {"text_config.hidden_size", "flag", "ids", "extra", "new"}
    assert got["extra"] == ConfigChange("extra", {}, None, "a")
    assert got["new"] == ConfigChange("new", None, None, "b")  # present in B with a null value
    assert got["flag"].to_json() == {"key": "flag", "a": True, "b": 1, "only_in": None}
    assert "_name_or_path" in {c.key for c in config_changes(a, b, include_noise=True)}


def test_flatten_is_bounded_and_keeps_file_order():
    keys, complete = flatten({"b": 1, "a": {"y": 2, "x": 3}})
    assert list(keys) == ["b", "a.y", "a.x"] and complete
    keys, complete = flatten({f"k{i}": i for i in range(50)}, limit=10)
    assert len(keys) == 10 and not complete


def test_tensor_changes_name_dtype_shape():
    a = {"w": ("F32", (2, 3)), "only_a": ("F32", (1,)), "same": ("I64", (4,))}
    b = {"w": ("BF16", (2, 3)), "only_b": ("F16", (1,)), "same": ("I64", (4,))}
    assert [(c.name, c.a, c.b) for c in tensor_changes(a, b)] == [
        ("only_a", ("F32", (1,)), None), ("only_b", None, ("F16", (1,))), ("w", ("F32", (2, 3)), ("BF16", (2, 3))),
    ]  # fmt: skip


def test_a_folder_without_config_and_a_broken_one_are_problems_not_errors(tmp_path):
    syn.write_safetensors(tmp_path / "a" / "model.safetensors", {"w": ("F32", (2,))})
    syn.write_hf_model(tmp_path / "b")
    (tmp_path / "b" / "config.json").write_text("{nope")
    diff = diff_checkpoints(tmp_path / "a", tmp_path / "b")
    assert diff.problems[0] == "A: no config.json" and diff.problems[1].startswith("B: config.json: invalid JSON")
    assert diff.config == []


# --- weight values ------------------------------------------------------------------------------------


def _save(path, tensors):
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def _truth(a, b) -> float:
    import torch

    d = (a.to(torch.float64) - b.to(torch.float64)).abs()
    return float(d.max()) if d.numel() else 0.0


@pytest.mark.parametrize("chunk", [7, 1 << 20])  # 7 elements: every tensor crosses chunk boundaries
def test_max_abs_diff_per_tensor_matches_torch_for_every_dtype(tmp_path, monkeypatch, chunk):
    import torch

    monkeypatch.setattr(weight_compare, "CHUNK_ELEMENTS", chunk)
    g = torch.Generator().manual_seed(0)
    a = {
        "f32": torch.randn(33, 5, generator=g),
        "f16": torch.randn(40, generator=g).half(),
        "bf16": torch.randn(3, 17, generator=g).bfloat16(),
        "f64": torch.randn(9, generator=g).double(),
        "i64": torch.randint(-1000, 1000, (25,), generator=g),
        "u8": torch.randint(0, 255, (30,), generator=g, dtype=torch.uint8),
        "same": torch.randn(50, generator=g),
        "empty": torch.zeros(0, 4),
    }
    b = {k: v.clone() for k, v in a.items()}
    b["f32"][4, 2] += 0.25
    b["f16"][39] -= 1.5
    b["bf16"][2, 16] += 2.0
    b["f64"][0] += 1e-9
    b["i64"][11] += 7
    b["u8"][0] = 255 - int(a["u8"][0])
    _save(tmp_path / "a.safetensors", a)
    _save(tmp_path / "b.safetensors", b)
    got = compare_weights(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    by_name = {t.name: t for t in got.tensors}
    assert set(by_name) == set(a) and got.skipped == [] and got.problems == []
    for name in a:
        assert by_name[name].max_abs_diff == pytest.approx(_truth(a[name], b[name]), rel=0, abs=0), name
    assert by_name["same"].identical and by_name["empty"].identical and not by_name["bf16"].identical
    assert got.tensors[0].name == "u8" or got.tensors[0].max_abs_diff >= by_name["u8"].max_abs_diff
    assert got.max_abs_diff == max(_truth(a[n], b[n]) for n in a)


def test_an_export_in_another_dtype_is_compared_by_value(tmp_path):
    import torch

    w = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    _save(tmp_path / "fp32" / "model.safetensors", {"w": w})
    _save(tmp_path / "bf16" / "model.safetensors", {"w": w.bfloat16()})
    got = compare_weights(tmp_path / "fp32", tmp_path / "bf16")
    (t,) = got.tensors
    assert (t.dtype_a, t.dtype_b) == ("F32", "BF16")
    assert t.max_abs_diff == _truth(w, w.bfloat16()) and 0 < t.max_abs_diff < 0.05


def test_nan_and_inf_are_compared_by_place(tmp_path):
    import torch

    a = torch.tensor([float("nan"), float("inf"), 1.0, float("-inf"), 2.0])
    b = torch.tensor([float("nan"), float("inf"), float("nan"), float("inf"), 2.5])
    _save(tmp_path / "a.safetensors", {"t": a})
    _save(tmp_path / "b.safetensors", {"t": b})
    (t,) = compare_weights(tmp_path / "a.safetensors", tmp_path / "b.safetensors").tensors
    assert t.nan_mismatches == 1 and t.max_abs_diff == float("inf") and not t.identical


def test_refuses_over_the_limit_before_reading_and_without_safetensors(tmp_path):
    import torch

    _save(tmp_path / "a.safetensors", {"w": torch.zeros(1000)})
    _save(tmp_path / "b.safetensors", {"w": torch.zeros(1000)})
    with pytest.raises(CompareError) as e:
        compare_weights(tmp_path / "a.safetensors", tmp_path / "b.safetensors", max_bytes=7999)
    assert str(e.value) == (
        "comparing the weights would read 7.8 KiB, over the 7.8 KiB limit: pass --max-bytes to allow more"
    )
    assert compare_weights(tmp_path / "a.safetensors", tmp_path / "b.safetensors", max_bytes=8000).tensors
    syn.write_torch_zip(tmp_path / "c" / "pytorch_model.bin")
    with pytest.raises(CompareError, match=r"^B .*c: no safetensors weights"):
        compare_weights(tmp_path / "a.safetensors", tmp_path / "c")


def test_shape_mismatch_missing_names_and_truncated_data_are_skipped_with_reasons(tmp_path):
    import torch

    _save(tmp_path / "a.safetensors", {"w": torch.ones(4), "v": torch.ones(2, 2), "x": torch.ones(3)})
    _save(tmp_path / "b.safetensors", {"w": torch.ones(4), "v": torch.ones(4), "y": torch.ones(3)})
    got = compare_weights(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert [t.name for t in got.tensors] == ["w"]
    assert dict(got.skipped) == {"v": "shape [2, 2] vs [4]", "x": "only in A", "y": "only in B"}
    _save(tmp_path / "c.safetensors", {"w": torch.ones(4)})
    data = (tmp_path / "c.safetensors").read_bytes()
    (tmp_path / "c.safetensors").write_bytes(data[:-4])  # the last element of w's data is gone
    got = compare_weights(tmp_path / "a.safetensors", tmp_path / "c.safetensors")
    assert got.tensors == [] and got.skipped[-1] == ("w", "unreadable ('w': data ends early (truncated file))")
    assert any(p.startswith("B: ") and "truncated" in p for p in got.problems)
