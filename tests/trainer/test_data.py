"""trainer.data: validation errors, label maps (the row order: test_sampling.py)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainer.config import parse_args
from trainer.data import DataError, LabelMap, load_and_validate, validate
from trainer.demo import demo_dataframe


def _frame(n=20, labels=("a", "b")):
    return pd.DataFrame(
        {"text": [f"t{i}" for i in range(n)], "label": [labels[i % len(labels)] for i in range(n)]}
    )


def _check(df, *argv, path="d.csv"):
    return validate(df, parse_args(list(argv)), path)


@pytest.mark.parametrize(
    ("df", "argv", "needle"),
    [
        (_frame().drop(columns="text"), [], "no text column 'text'"),
        (_frame(), ["--data.id_column", "key"], "no id column 'key'"),
        (_frame(labels=("a",)), [], "one class only"),
        (_frame(n=3), [], "3 rows, fewer than folds.num_folds = 5"),
        (_frame(n=12, labels=("a",) * 5 + ("b",)), [], "class 'b' has 2 rows"),
        (_frame().assign(label=[None] + ["a", "b"] * 9 + ["a"]), [], "has 1 empty values (first at row 0)"),
        (_frame().assign(key=[1] * 20), ["--data.id_column", "key"], "has duplicates"),
        (_frame().assign(g=[0, 1] * 10), ["--data.group_column", "g"], "2 groups in 'g'"),
    ],
)
def test_validation_errors_are_one_line(df, argv, needle):
    with pytest.raises(DataError) as e:
        _check(df, *argv)
    assert needle in str(e.value) and str(e.value).startswith("d.csv: ") and "\n" not in str(e.value)


def test_missing_and_unsupported_files(tmp_path):
    cfg = parse_args([])
    with pytest.raises(DataError, match="data file not found"):
        load_and_validate(cfg, tmp_path / "none.csv")
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        load_and_validate(cfg, tmp_path / "x.txt")


def test_parquet_and_csv_load_the_same(tmp_path):
    df = demo_dataframe(num_rows=60)
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_parquet(tmp_path / "d.parquet")
    cfg = parse_args(["--data.id_column", "id"])
    a, b = load_and_validate(cfg, tmp_path / "d.csv"), load_and_validate(cfg, tmp_path / "d.parquet")
    assert a.labels == b.labels and np.array_equal(a.label_ids(), b.label_ids())


def test_label_map_sorts_ints_numerically_and_strings_lexically():
    ints = LabelMap.from_values(pd.Series([10, 2, 2, 1]))
    assert ints.classes == (1, 2, 10) and ints.id2label() == {0: "1", 1: "2", 2: "10"}
    assert ints.encode(pd.Series([10, 1])).tolist() == [2, 0] and ints.decode(np.array([1])) == [2]
    strs = LabelMap.from_values(pd.Series(["pos", "neg", "neu"]))
    assert strs.classes == ("neg", "neu", "pos") and strs.label2id()["pos"] == 2


def test_demo_data_is_deterministic_and_not_trivial():
    a, b = demo_dataframe(), demo_dataframe()
    pd.testing.assert_frame_equal(a, b)
    shares = a["label"].value_counts(normalize=True)
    assert len(shares) == 3 and shares.max() < 0.5


@pytest.mark.slow
def test_demo_tokenizer_is_the_same_bytes_every_time(tmp_path):
    """Resume re-materialises nothing, but a fresh output_dir must tokenize like the run it reproduces."""
    import subprocess
    import sys

    code = (
        "from trainer.demo import demo_dataframe, train_tokenizer; import sys; "
        "train_tokenizer(demo_dataframe()['text'].tolist()).save_pretrained(sys.argv[1])"
    )
    for name in ("a", "b"):  # separate processes: hash-map order differs between them
        subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / name)], check=True, cwd=Path(__file__).parents[2]
        )
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (
        tmp_path / "b" / "tokenizer.json"
    ).read_bytes()
