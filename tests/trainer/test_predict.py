"""predict.py on a 2-fold run folder built with save_fold_model: the ensemble equals the fold mean."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainer.predict import PredictError, find_models, fold_weights, predict

REPO = Path(__file__).resolve().parents[2]
TEXTS = [
    "good movie",
    "bad plot",
    "the movie was very good",
    "not great",
    "awful awful",
    "fine",
    "poor plot x",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from accelerate import Accelerator

    from tests.fixtures.ckpt import fresh_accelerate_state, spread_weights, tiny_model, tiny_tokenizer
    from trainer.checkpoint import save_fold_model

    run = tmp_path_factory.mktemp("run")
    with fresh_accelerate_state():
        accelerator = Accelerator(cpu=True)
        for fold, score in ((0, 0.6), (1, 0.9)):
            model = accelerator.prepare(spread_weights(tiny_model(seed=10 + fold), seed=fold))
            save_fold_model(
                accelerator, model, tiny_tokenizer(), run / f"tiny_fold_{fold}", trainer_state={},
                metric={"name": "f1_macro", "value": score}, step=4, fold=fold,
            )  # fmt: skip
    config = {
        "data": {"text_column": "review", "text_pair_column": None, "id_column": "uid", "max_length": 16}
    }
    (run / "run.json").write_text(
        json.dumps({"format": "ckpt-tui/run/1", "config": config, "metric": "f1_macro"})
    )
    cv = {"metric": "f1_macro", "folds": {"0": {"f1_macro": 0.6}, "1": {"f1_macro": 0.9}}}
    (run / "cv.json").write_text(json.dumps(cv))
    return run


@pytest.fixture()
def input_csv(tmp_path):
    path = tmp_path / "test.csv"
    pd.DataFrame({"uid": [f"r{i}" for i in range(len(TEXTS))], "review": TEXTS}).to_csv(path, index=False)
    return path


def _own_probs(folder: Path) -> np.ndarray:
    """One fold model on its own, all rows in one padded batch (predict() uses other batches)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = AutoTokenizer.from_pretrained(folder)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return torch.softmax(model(**batch).logits, dim=-1).numpy()


def _run_predict(*args, **kwargs):
    from accelerate import Accelerator

    from tests.fixtures.ckpt import fresh_accelerate_state

    with fresh_accelerate_state():
        return predict(*args, accelerator=Accelerator(cpu=True), **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("weighted", [False, True])
def test_ensemble_equals_mean_of_fold_probabilities(run_dir, input_csv, tmp_path, weighted):
    out = tmp_path / "pred.csv"
    frame = _run_predict(run_dir, input_csv, out, batch_size=3, weighted=weighted)
    p0, p1 = _own_probs(run_dir / "tiny_fold_0"), _own_probs(run_dir / "tiny_fold_1")
    assert not np.allclose(p0, p1, atol=1e-3)  # two different models, else the mean proves nothing
    w0, w1 = (0.6 / 1.5, 0.9 / 1.5) if weighted else (0.5, 0.5)
    expected = w0 * p0 + w1 * p1

    written = pd.read_csv(out)
    assert list(written.columns) == ["id", "prediction", "prob_neg", "prob_pos"]
    assert written["id"].tolist() == [f"r{i}" for i in range(len(TEXTS))]
    np.testing.assert_allclose(written[["prob_neg", "prob_pos"]].to_numpy(), expected, rtol=0, atol=1e-6)
    assert written["prediction"].tolist() == [["neg", "pos"][i] for i in expected.argmax(axis=1)]
    pd.testing.assert_frame_equal(frame.reset_index(drop=True), written, check_dtype=False)


def test_find_models_reads_folds_and_scores(run_dir):
    found = find_models(run_dir)
    assert [(m.path.name, m.fold, m.score) for m in found.models] == [
        ("tiny_fold_0", 0, 0.6),
        ("tiny_fold_1", 1, 0.9),
    ]
    assert found.data_config["text_column"] == "review"
    assert fold_weights(found.models, "f1_macro", weighted=True) == pytest.approx([0.4, 0.6])
    assert fold_weights(found.models, "log_loss", weighted=True) == pytest.approx([0.6, 0.4])


def test_one_line_errors(run_dir, input_csv, tmp_path):
    with pytest.raises(PredictError, match=r"no such run folder"):
        find_models(tmp_path / "nope")
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    (empty_run / "run.json").write_text("{}")
    with pytest.raises(PredictError, match=r"no <model>_fold_<k>/ folders"):
        find_models(empty_run)
    with pytest.raises(
        PredictError, match=r"column 'body' not found \(columns: uid, review\); pass --text-column"
    ):
        predict(run_dir, input_csv, text_column="body")
    with pytest.raises(PredictError, match=r"no such input file"):
        predict(run_dir, tmp_path / "missing.csv")


def test_incomplete_fold_folder_is_refused(run_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken_run"
    shutil.copytree(run_dir, broken)
    weights = broken / "tiny_fold_1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(
        PredictError, match=r"tiny_fold_1: incomplete model folder \(model.safetensors: 100 bytes"
    ):
        find_models(broken)


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "bin"))
    try:
        import predict as predict_cli
    finally:
        sys.path.remove(str(REPO / "bin"))
    assert predict_cli.main([str(tmp_path / "nope"), str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("predict.py: error: ") and "no such run folder" in err


@pytest.mark.slow
def test_rows_are_predicted_longest_first_and_written_back_in_input_order(run_dir, input_csv, tmp_path, monkeypatch):
    """Batches of similar length pad little; the output keeps the input's order (checked above too)."""
    from transformers import AutoTokenizer

    import trainer.predict as predict_module

    seen: list[list[int]] = []
    original = predict_module._predict_probs

    def recording(accelerator, model, loader, n_rows):
        seen.append([int(r) for batch in loader for r in batch["rows"]])
        return original(accelerator, model, loader, n_rows)

    monkeypatch.setattr(predict_module, "_predict_probs", recording)
    frame = _run_predict(run_dir, input_csv, tmp_path / "p.csv", batch_size=2)
    lengths = [len(ids) for ids in AutoTokenizer.from_pretrained(run_dir / "tiny_fold_0")(TEXTS)["input_ids"]]
    assert len(seen) == 2 and seen[0] == seen[1] and sorted(seen[0]) == list(range(len(TEXTS)))
    assert [lengths[r] for r in seen[0]] == sorted(lengths, reverse=True)
    assert seen[0] != sorted(seen[0])  # the order did change, so the write-back below is tested
    assert frame["id"].tolist() == [f"r{i}" for i in range(len(TEXTS))]
