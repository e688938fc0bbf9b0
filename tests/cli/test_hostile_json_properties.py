"""Property-based: every JSON and CSV file the CLI reads, filled with huge integers, non-finite floats,
lone surrogates, control characters, wrong types and deep nesting, gives an exit code of 0, 1 or 2 and
never a traceback; what it prints is valid UTF-8 without a raw ESC/BEL/bidi character (issue "Hostile
and odd input", section 5).

The CLI runs in-process on a strict UTF-8 stdout (a lone surrogate that reached ``print`` raises, as on a
real terminal). Example counts are modest: CI has two cores."""

from __future__ import annotations

import io
import json
import math
import shutil
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures import synthetic as s
from tui.cli import main

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HUGE = int("9" * 401)
ODD_TEXT = ["\ud800", "\udfff", "a\udcffb", "\x1b[31mred", "t\x1b]0;PWNED\x07x", "a\nb", "\u202eexe", "\u2066", ""]
RAW = ("\x1b", "\x07", "\u202e", "\u2066")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([HUGE, -HUGE, 2**63, 2**64, -(2**63) - 1, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324]),
    st.text(max_size=12),
    st.sampled_from(ODD_TEXT),
)
keys = st.one_of(st.text(max_size=8), st.sampled_from(ODD_TEXT))
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=10
)


def dumps(value) -> str:
    """JSON as Python writes it: NaN/Infinity spelled out, lone surrogates as \\uXXXX escapes."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


def deep(n: int = 100_000) -> str:
    return "[" * n + "]" * n


def run(*argv: str) -> tuple[int, str, str]:
    out_b, err_b = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_b, encoding="utf-8", errors="strict", write_through=True)
    err = io.TextIOWrapper(err_b, encoding="utf-8", errors="strict", write_through=True)
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = main([*argv, "--no-cache"])
        except SystemExit as e:
            rc = e.code
    return rc, out_b.getvalue().decode("utf-8"), err_b.getvalue().decode("utf-8")


def check(*argv: str) -> tuple[int, str, str]:
    rc, out, err = run(*argv)
    assert rc in (0, 1, 2), (argv, rc, err)
    assert "Traceback" not in err
    for c in RAW:
        assert c not in out and c not in err, (argv, c)
    if "--json" in argv and rc == 0:
        json.loads(out)
    return rc, out, err


def document(original: dict, mutation, choice: int):
    """The valid document with one of its keys (or a new odd key) set to ``mutation``, or ``mutation``
    itself instead of the document, or a deeply nested array."""
    if choice == 0:
        return mutation
    doc = dict(original)
    names = list(doc) or ["x"]
    doc[names[choice % len(names)]] = mutation
    return doc


class Tree:
    """A ROOT holding one run with a checkpoint, a step checkpoint, fold CSVs and a trash entry."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="hostile-json-"))
        run = self.root / "run"
        self.ck = run / "checkpoint-10"
        self.ck.mkdir(parents=True)
        s.write_hf_checkpoint(self.ck, 10, best_metric=0.5, evals={10: 0.5})
        s.write_tokenizer(self.ck)
        (self.ck / "tokenizer_config.json").write_text(dumps({"model_max_length": 128, "do_lower_case": True}))
        self.step = run / "checkpoints" / "fold_0" / "step_10"
        self.step.mkdir(parents=True)
        s.write_hf_model(self.step, tokenizer=False)
        s.write_trainer_state(self.step, global_step=10, evals={10: 0.5})
        (self.step / "trainer_state.json").rename(self.step / "train_state.json")
        s.write_manifest(self.step, kind="step-checkpoint", step=10, fold=0,
                         metric={"name": "f1_macro", "value": 0.5, "step": 10}, best_metric=None)  # fmt: skip
        self.sharded = self.root / "sharded"
        self.sharded.mkdir()
        s.write_hf_model(self.sharded, shards=2, tokenizer=False)
        (run / "run.json").write_text(dumps({"format": "ckpt-tui/run/1", "run_name": "run", "metric": "f1_macro"}))
        (run / "cv.json").write_text(dumps({"metric": "f1_macro", "folds": {}}))
        (run / "valid_df_fold_0.csv").write_text("id,label,prediction,prob_a,prob_b\n0,a,a,0.9,0.1\n1,b,b,0.2,0.8\n")
        entry = self.root / ".ckpt-trash" / "20260101T000000Z-00001"
        (entry / "item").mkdir(parents=True)
        (entry / "item" / "x").write_text("x")
        (entry / "entry.json").write_text(dumps({"id": entry.name, "original_path": "run/old",
                                                 "deleted_at": "2026-01-01T00:00:00Z", "size_bytes": 1}))  # fmt: skip
        self.entry = entry / "entry.json"

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def tree():
    t = Tree()
    yield t
    t.close()


def _rewrite(path: Path, mutation, choice: int, nested: bool) -> str:
    original = json.loads(path.read_text())
    text = deep() if nested else dumps(document(original, mutation, choice))
    old = path.read_text()
    path.write_text(text)
    return old


# file (relative to the tree), commands that read it
READERS = {
    "trainer_state": ("ck/trainer_state.json", [("ls", "{root}", "--json"), ("inspect", "{ck}", "--json"),
                                                ("inspect", "{ck}"),
                                                ("prune", "{root}", "--keep", "1", "--metric", "f1_macro", "--dry-run")]),
    "train_state": ("step/train_state.json", [("ls", "{root}"), ("inspect", "{step}", "--json")]),
    "manifest": ("step/ckpt_manifest.json", [("ls", "{root}", "--json"), ("inspect", "{step}", "--verify"),
                                             ("prune", "{root}", "--keep", "1", "--metric", "f1_macro", "--dry-run",
                                              "--json")]),
    "config": ("ck/config.json", [("ls", "{root}"), ("inspect", "{ck}", "--json"), ("inspect", "{ck}")]),
    "tokenizer_config": ("ck/tokenizer_config.json", [("inspect", "{ck}", "--json"), ("inspect", "{ck}")]),
    "tokenizer": ("ck/tokenizer.json", [("inspect", "{ck}", "--json"), ("inspect", "{ck}")]),
    "index": ("sharded/model.safetensors.index.json", [("ls", "{root}"), ("inspect", "{sharded}", "--json"),
                                                       ("inspect", "{sharded}")]),
    "run": ("run/run.json", [("ls", "{root}", "--json"), ("runs", "{root}", "--json")]),
    "cv": ("run/cv.json", [("runs", "{root}", "--json"), ("runs", "{root}")]),
    "trash_entry": ("trash/entry.json", [("trash", "list", "--root", "{root}", "--json"),
                                         ("trash", "list", "--root", "{root}"),
                                         ("trash", "empty", "--root", "{root}", "--dry-run")]),
}  # fmt: skip


def _path(tree: Tree, rel: str) -> Path:
    base, _, name = rel.partition("/")
    folder = {"ck": tree.ck, "step": tree.step, "sharded": tree.sharded, "run": tree.root / "run",
              "trash": tree.entry.parent}[base]  # fmt: skip
    return folder / name


def _argv(tree: Tree, template: tuple[str, ...]) -> list[str]:
    names = {"root": tree.root, "ck": tree.ck, "step": tree.step, "sharded": tree.sharded, "run": tree.root / "run"}
    return [part.format(**names) for part in template]


@pytest.mark.parametrize("reader", list(READERS))
def test_every_json_reader_survives_hostile_values(tree, reader):
    rel, commands = READERS[reader]
    path = _path(tree, rel)

    @SETTINGS
    @given(mutation=values, choice=st.integers(0, 12), nested=st.integers(0, 24).map(lambda n: n == 0))
    def prop(mutation, choice, nested):
        old = _rewrite(path, mutation, choice, nested)
        try:
            for template in commands:
                check(*_argv(tree, template))
        finally:
            path.write_text(old)

    prop()


cells = st.one_of(
    st.sampled_from(["inf", "-inf", "nan", "NaN", "1e308", "1e999", "-1", "0", "9" * 401, "", "x", "\x1b[31m",
                     "\u202e", '"a,b"', "1e-320"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)  # fmt: skip
columns = st.lists(st.sampled_from(["label", "prediction", "prob_a", "prob_b", "p_c", "id", "target", "\x1b"]),
                   min_size=0, max_size=6)  # fmt: skip


@SETTINGS
@given(header=columns, rows=st.lists(st.lists(cells, min_size=0, max_size=7), max_size=6))
def test_fold_csvs_survive_hostile_cells(header, rows):
    root = Path(tempfile.mkdtemp(prefix="hostile-csv-"))
    try:
        text = ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows)
        (root / "valid_df_fold_0.csv").write_text(text, encoding="utf-8", errors="surrogateescape")
        (root / "valid_df_fold_1.csv").write_text("label,prediction,prob_a,prob_b\na,a,0.9,0.1\nb,b,0.2,0.8\n")
        for argv in (("metrics", str(root), "--json"), ("metrics", str(root))):
            rc, out, _ = check(*argv)
            if rc == 0 and "--json" in argv:
                for fold in json.loads(out)["folds"].values():
                    assert fold["log_loss"] is None or math.isfinite(fold["log_loss"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize(
    "value",
    [{"a": 1.5, "b": [1, (2, 3)]}, {"nan": float("nan"), "inf": [float("inf")]}, {"name": "ck\udcffpt"},
     {"emoji": "\U0001f600", "lone": ["\ud800"]}, [{"x": float("nan")}, {"y": "\udc80"}, {"z": "ok"}]],
)  # fmt: skip
def test_print_json_gives_what_the_jsonable_copy_gives(value, capsys):
    # objects take the C encoder's word that nothing needs jsonable's walk; lists check item by item
    from tui.cli.output import jsonable, print_json

    print_json(value)
    out = capsys.readouterr().out
    assert json.loads(out) == json.loads(json.dumps(jsonable(value), allow_nan=False))
    if isinstance(value, dict):
        assert out == json.dumps(jsonable(value), indent=2, allow_nan=False) + "\n"
