"""config.json / tokenizer / trainer_state.json summaries: fields, bounds, and no exception on bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fixtures import synthetic as s
from tui.core import summaries
from tui.core.files import load_json
from tui.core.summaries import (
    config_summary,
    resolve_best_checkpoint,
    tokenizer_summary,
    trainer_state_summary,
)


def test_config_fields(tmp_path):
    s.write_config(tmp_path, id2label={"0": "a", "1": "b", "2": "c"}, dtype=None, torch_dtype="bfloat16")
    summary, problems = config_summary(tmp_path)
    assert problems == []
    assert summary == {
        "model_type": "bert",
        "architectures": ["BertForSequenceClassification"],
        "hidden_size": 8,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "vocab_size": 32,
        "num_labels": 3,
        "id2label": {"0": "a", "1": "b", "2": "c"},
        "dtype": "bfloat16",
    }


def test_config_unknown_values_are_none(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": 5, "hidden_size": "big", "num_labels": true}')
    summary, problems = config_summary(tmp_path)
    assert problems == [] and summary["model_type"] is None and summary["hidden_size"] is None
    assert summary["num_labels"] is None


@pytest.mark.parametrize(
    "content, word",
    [
        ("{ nope", "invalid JSON"),
        ("[1, 2]", "not a JSON object"),
        ("", "empty"),
        ("[" * 100000, "invalid JSON"),
        (b"\xff\xfe{", "invalid JSON"),
    ],
)
def test_bad_config_is_one_line_problem(tmp_path, content, word):
    path = tmp_path / "config.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    summary, problems = config_summary(tmp_path)
    assert summary is None and len(problems) == 1
    assert problems[0].startswith("config.json: ") and word in problems[0] and "\n" not in problems[0]


def test_json_reads_are_bounded(tmp_path):
    (tmp_path / "big.json").write_text(json.dumps({"x": "y" * 5000}))
    data, err = load_json(tmp_path / "big.json", limit=1000)
    assert data is None and "larger than" in err
    assert load_json(tmp_path / "missing.json") == (None, None)


def test_tokenizer_from_tokenizer_json(tmp_path):
    s.write_tokenizer(tmp_path, vocab_size=30, added=2)
    summary, problems = tokenizer_summary(tmp_path)
    assert problems == []
    assert summary["class"] == "BertTokenizer"
    assert summary["vocab_size"] == 32
    assert summary["model_max_length"] == 128
    assert summary["special_tokens"] == {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]"}
    assert summary["added_special_tokens"] == ["[X0]", "[X1]"]
    assert summary["files"] == ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]


def test_tokenizer_unigram_vocab_txt_and_no_max_length(tmp_path):
    uni = tmp_path / "uni"
    s.write_json(
        uni / "tokenizer.json",
        {
            "model": {"type": "Unigram", "vocab": [["a", 0.0], ["b", -1.0], ["c", -2.0]]},
            "added_tokens": [{"id": 0, "content": "a"}],
        },
    )
    s.write_json(uni / "tokenizer_config.json", {"model_max_length": 1000000000000000019884624838656})
    summary, _ = tokenizer_summary(uni)
    assert summary["vocab_size"] == 3 and summary["model_max_length"] is None
    wp = tmp_path / "wp"
    wp.mkdir()
    (wp / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\nworld\n")
    assert tokenizer_summary(wp)[0]["vocab_size"] == 4
    assert tokenizer_summary(tmp_path / "none_here") == (None, [])


def test_tokenizer_bad_json_is_a_problem(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"model": ')
    summary, problems = tokenizer_summary(tmp_path)
    assert summary["vocab_size"] is None and problems and problems[0].startswith("tokenizer.json:")


def test_trainer_state_fields(tmp_path):
    s.write_trainer_state(
        tmp_path,
        global_step=6,
        epoch=2.0,
        best_metric=0.9,
        best_global_step=4,
        best_model_checkpoint=".",
        evals={4: 0.9, 6: 0.8},
    )
    summary, problems = trainer_state_summary(tmp_path, root=tmp_path.parent)
    assert problems == []
    assert (
        summary["global_step"],
        summary["epoch"],
        summary["best_metric"],
        summary["best_global_step"],
    ) == (6, 2.0, 0.9, 4)
    assert summary["best_model_checkpoint"] == "."
    assert summary["best_model_checkpoint_resolved"] == tmp_path.name
    assert summary["metric_name"] == "eval_f1_macro"
    assert len(summary["log_history"]) == 8
    assert summaries.last_evaluation(summary["log_history"], "eval_f1_macro", 6) == (0.8, 6)


def test_metric_name_is_not_guessed_when_ambiguous(tmp_path):
    state = {
        "best_metric": 0.5,
        "best_global_step": 2,
        "log_history": [{"step": 2, "eval_a": 0.5, "eval_b": 0.5}],
    }
    assert summaries.infer_metric_name(state) is None


def test_resolve_best_checkpoint(tmp_path):
    out = tmp_path / "out"
    for n in (2, 4):
        (out / f"checkpoint-{n}").mkdir(parents=True)
    ck4 = out / "checkpoint-4"
    assert resolve_best_checkpoint(ck4, ".") == ck4
    assert resolve_best_checkpoint(out / "checkpoint-2", "/old/abs/out/checkpoint-4") == ck4  # stale: sibling
    assert resolve_best_checkpoint(out, "/old/abs/out/checkpoint-4") == ck4  # output folder: child
    assert resolve_best_checkpoint(out / "checkpoint-2", "../checkpoint-4") == ck4  # relative to the folder
    assert resolve_best_checkpoint(out / "checkpoint-2", str(ck4)) == ck4  # valid absolute
    assert resolve_best_checkpoint(out / "checkpoint-2", "/old/checkpoint-9") is None
    for junk in (None, "", 5, "   "):
        assert resolve_best_checkpoint(out, junk) is None


def _resolve_by_paths(folder, value, root=None):
    """The Path-based resolver the string one replaced (the scan resolves one per trainer_state.json)."""
    if not isinstance(value, str) or not value.strip():
        return None
    folder = Path(os.path.abspath(folder))
    if not os.path.isabs(value):
        direct = Path(os.path.normpath(folder / value))
        if direct.is_dir() and (direct == folder.parent or folder.parent in direct.parents):
            return direct
    last = Path(value.rstrip("/\\").replace("\\", "/")).name
    if last and last not in (".", ".."):
        if folder.name == last:
            return folder
        near = (folder.parent / last, folder / last)
        for candidate in near if summaries.CHECKPOINT_N.match(folder.name) else near[::-1]:
            if candidate.is_dir():
                return candidate
    if root is not None and os.path.isabs(value) and os.path.isdir(value):
        real, real_root = Path(os.path.realpath(value)), Path(os.path.realpath(root))
        if real == real_root or real_root in real.parents:
            return Path(os.path.normpath(value))
    return None


def _relative_by_paths(resolved, root):
    if resolved is None:
        return None
    text = resolved.as_posix()
    if root is not None:
        try:
            text = resolved.relative_to(Path(os.path.abspath(root))).as_posix()
        except ValueError:
            pass
    return text


_PIECES = ["", ".", "..", "checkpoint-4", "checkpoint-2", "out", "outside", "x", "gone", "/", "//", "\\", " ", "a b"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pieces=st.lists(st.sampled_from(_PIECES), max_size=6),
    anchor=st.sampled_from(["", "abs", "abs/"]),
    folder=st.sampled_from(["out", "out/checkpoint-2", "out/checkpoint-4", "out/x", ".", "out/gone"]),
    root=st.sampled_from([None, "", "out", "out/x", "/"]),
)
@example(pieces=["..", "..", "outside"], anchor="", folder="out/checkpoint-2", root=None)  # a name prefix
@example(pieces=["out", "checkpoint-4", "."], anchor="", folder="out/x", root=None)  # a trailing "."
@example(pieces=["", "", "out", "x", ""], anchor="abs/", folder="out/gone", root="out")  # inside ROOT
@example(pieces=["..", "..", ".."], anchor="", folder="out/checkpoint-2", root="/")
def test_resolve_best_checkpoint_on_strings_is_the_path_rules(tmp_path, pieces, anchor, folder, root):
    """Every branch (relative, last component as itself / sibling / child, absolute inside ROOT), odd
    spellings included (dots, doubled and trailing slashes, backslashes), gives what Path gave."""
    for name in ("out/checkpoint-2", "out/checkpoint-4", "out/x/checkpoint-4", "x", "outside"):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
    value = "/".join(pieces)
    if anchor:
        value = str(tmp_path) + ("/" if anchor == "abs/" else "") + ("/" if value else "") + value
    folder_path = tmp_path / folder
    root_path = None if root is None else tmp_path / root if root != "/" else Path("/")
    want = _resolve_by_paths(folder_path, value, root_path)
    assert resolve_best_checkpoint(folder_path, value, root_path) == want
    assert resolve_best_checkpoint(str(folder_path), value, root_path) == want
    got = summaries._resolve_best(str(folder_path), value, root_path)
    assert (got if got is None else summaries._relative_text(got, root_path)) == _relative_by_paths(want, root_path)


def test_trainer_state_not_an_object(tmp_path):
    (tmp_path / "trainer_state.json").write_text("[]")
    assert trainer_state_summary(tmp_path) == (None, ["trainer_state.json: not a JSON object"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{}")
    path.chmod(0)
    summary, problems = config_summary(tmp_path)
    assert summary is None and "unreadable" in problems[0]
