"""`ckpt-tui ensemble` writes a spec whose OOF metric sklearn reproduces, and `bin/predict.py --ensemble`
predicts with it: the weighted mean of every member's own probabilities."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.core.test_ensemble import sklearn_oof
from tests.fixtures.runs import add_fold_models, write_kfold_run
from tests.subprocess_env import cpu_only
from tui.cli import main

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["good movie", "bad plot", "the movie was very good", "not great", "awful awful", "fine"]


def _own_probs(folder: Path) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = AutoTokenizer.from_pretrained(folder)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return torch.softmax(model(**batch).logits, dim=-1).numpy()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, skill, seed in (("a", 0.8, 1), ("b", 0.6, 20)):
        add_fold_models(write_kfold_run(root, name, skill=skill, seed=seed), folds=2, seed=seed)
    return root


def test_exported_spec_predicts_and_its_oof_equals_sklearn(root, tmp_path, capsys):
    spec_path = tmp_path / "ens.json"
    assert main(["ensemble", str(root), "a", "b:1=2", "-o", str(spec_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    spec = json.loads(spec_path.read_text())
    assert printed["oof"] == spec["oof"] and spec["metric"] == "f1_macro"
    members = [(Path(m["folder"]).parts[-2:], m["fold"], m["weight"]) for m in spec["members"]]
    assert members == [
        (("a", "tiny_fold_0"), 0, 0.25),
        (("a", "tiny_fold_1"), 1, 0.25),
        (("b", "tiny_fold_1"), 1, 0.5),
    ]
    n, want = sklearn_oof([(root / "a", [0, 1], 0.5), (root / "b", [1], 0.5)])
    assert spec["oof"]["n"] == n
    for name, value in want.items():
        assert spec["oof"][name] == pytest.approx(value)

    data = tmp_path / "test.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(data, index=False)
    out = tmp_path / "pred.csv"
    done = subprocess.run(
        [sys.executable, str(REPO / "bin" / "predict.py"), "--ensemble", str(spec_path), str(data), "-o", str(out)],
        env=cpu_only(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = pd.read_csv(out)[["prob_neg", "prob_pos"]].to_numpy()
    want_probs = (
        0.25 * _own_probs(root / "a" / "tiny_fold_0")
        + 0.25 * _own_probs(root / "a" / "tiny_fold_1")
        + 0.5 * _own_probs(root / "b" / "tiny_fold_1")
    )
    np.testing.assert_allclose(got, want_probs, atol=1e-5)


def test_ensemble_report_without_output(root, capsys):
    assert main(["ensemble", str(root), "a:0,1", "b"]) == 0
    out = capsys.readouterr().out
    assert "ensemble of 4 fold models from 2 runs" in out and "f1_macro" in out


def test_bad_member_is_a_usage_error(root, capsys):
    assert main(["ensemble", str(root), "a:x"]) == 2
    assert "not RUN[:FOLDS][=WEIGHT]" in capsys.readouterr().err
    assert main(["ensemble", str(root), "nope"]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_predict_refuses_a_run_dir_with_ensemble(tmp_path, capsys):
    done = subprocess.run(
        [sys.executable, str(REPO / "bin" / "predict.py"), "--ensemble", "x.json", "run", "in.csv"],
        env=cpu_only(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "--ensemble takes only INPUT" in done.stderr


def _permuted_tokenizer():
    """The tiny tokenizer with its words in reverse order: the same text encodes to other ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from tests.fixtures.ckpt import WORDS

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok = Tokenizer(
        models.WordLevel(vocab={t: i for i, t in enumerate(specials + WORDS[::-1])}, unk_token="[UNK]")
    )
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


def test_members_with_other_tokenizers_get_their_own_encoding(root, tmp_path):
    run = tmp_path / "other" / "c"
    run.parent.mkdir()
    write_kfold_run(run.parent, "c", skill=0.7, seed=5)
    add_fold_models(run, folds=1, seed=5)
    _permuted_tokenizer().save_pretrained(run / "tiny_fold_0")
    (run / "tiny_fold_0" / "ckpt_manifest.json").unlink()  # the tokenizer changed after the commit
    spec_path = tmp_path / "mixed.json"
    members = [(root / "a", 0, 0.5), (run, 0, 0.5)]
    spec_path.write_text(json.dumps({"format": "ckpt-tui/ensemble/1", "members": [
        {"folder": str(r / f"tiny_fold_{k}"), "fold": k, "weight": w} for r, k, w in members]}))  # fmt: skip
    data, out = tmp_path / "test.csv", tmp_path / "pred.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(data, index=False)
    done = subprocess.run(
        [sys.executable, str(REPO / "bin" / "predict.py"), "--ensemble", str(spec_path), str(data), "-o", str(out)],
        env=cpu_only(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    want = 0.5 * _own_probs(root / "a" / "tiny_fold_0") + 0.5 * _own_probs(run / "tiny_fold_0")
    np.testing.assert_allclose(pd.read_csv(out)[["prob_neg", "prob_pos"]].to_numpy(), want, atol=1e-5)
