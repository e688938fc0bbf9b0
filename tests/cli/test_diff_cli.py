"""`ckpt-tui diff A B`: the whole config, tensor tables, and `--weights` values with a size limit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.fixtures import synthetic as syn
from tui.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _save(path, tensors: dict[str, np.ndarray]):
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


@pytest.fixture
def pair(tmp_path):
    syn.write_hf_model(tmp_path / "a", config={"intermediate_size": 32, "problem_type": "single_label_classification",
                                                "use_cache": True, "transformers_version": "5.1.0"})  # fmt: skip
    syn.write_hf_model(tmp_path / "b", config={"intermediate_size": 64, "problem_type": "multi_label_classification",
                                                "use_cache": False, "transformers_version": "5.23.0"})  # fmt: skip
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    _save(tmp_path / "a" / "model.safetensors", {"w": w, "bias": np.zeros(32, np.float32)})
    changed = w.copy()
    changed[3, 4] += 0.25
    _save(tmp_path / "b" / "model.safetensors", {"w": changed, "bias": np.zeros(32, np.float32),
                                                  "extra": np.ones(2, np.float32)})  # fmt: skip
    return tmp_path / "a", tmp_path / "b"


def test_diff_json_lists_every_config_key_and_tensor_change(pair, capsys):
    code, out, err = run(capsys, "diff", str(pair[0]), str(pair[1]), "--json")
    data = json.loads(out)
    assert code == 0 and err == ""
    assert [c["key"] for c in data["config"]] == ["intermediate_size", "problem_type", "use_cache"]
    assert data["tensors"] == [{"name": "extra", "a": None, "b": {"dtype": "F32", "shape": [2]}}]
    assert data["tensors_compared"] == 2 and data["weights"] is None and data["noise_included"] is False
    code, out, _ = run(capsys, "diff", str(pair[0]), str(pair[1]), "--json", "--all")
    assert "transformers_version" in [c["key"] for c in json.loads(out)["config"]]


def test_diff_text(pair, capsys):
    code, out, _ = run(capsys, "diff", str(pair[0]), str(pair[1]))
    assert code == 0 and "config: 3 keys differ" in out
    assert "intermediate_size" in out and "32 -> 64" in out and "extra" in out and "(absent) -> F32 [2]" in out


def test_weights_max_abs_difference(pair, capsys):
    code, out, _ = run(capsys, "diff", str(pair[0]), str(pair[1]), "--weights", "--json")
    weights = json.loads(out)["weights"]
    assert code == 0 and weights["max_abs_diff"] == pytest.approx(0.25, abs=1e-6)
    by_name = {t["name"]: t for t in weights["tensors"]}
    assert by_name["bias"]["identical"] and not by_name["w"]["identical"]
    assert {"name": "extra", "reason": "only in B"} in weights["skipped"]
    code, out, _ = run(capsys, "diff", str(pair[0]), str(pair[1]), "--weights")
    assert code == 0 and "1 identical; max abs difference 0.25" in out


def test_weights_over_the_limit_are_refused_in_one_line(pair, capsys):
    code, out, err = run(capsys, "diff", str(pair[0]), str(pair[1]), "--weights", "--max-bytes", "1K", "--json")
    data = json.loads(out)
    assert code == 1 and data["weights"] is None and "over the 1.0 KiB limit" in data["weights_error"]
    assert err.count("\n") == 1 and "--max-bytes" in err
    assert [c["key"] for c in data["config"]]  # the rest of the comparison is still there


@pytest.mark.parametrize(
    "argv",
    [["diff", "{a}"], ["diff", "{a}", "{missing}"], ["diff", "{a}", "{b}", "--max-bytes", "1G"],
     ["diff", "{a}", "{b}", "--weights", "--max-bytes", "lots"]],
)  # fmt: skip
def test_usage_errors(pair, tmp_path, capsys, argv):
    subst = {"{a}": str(pair[0]), "{b}": str(pair[1]), "{missing}": str(tmp_path / "nope")}
    code, out, err = run(capsys, *[subst.get(a, a) for a in argv])
    assert code == 2 and out == "" and err.count("\n") == 1
