"""No hang, bounded memory, no traceback: FIFOs and device links named like the files we read, reads
capped by bytes read, trees deeper than any stack, numbers no float holds, and fold CSVs that are not
probabilities (issue "Hostile and odd input", sections 4 and 5)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from tests.fixtures import synthetic as s
from tui.core import actions, summaries
from tui.core.files import (
    json_int,
    json_number,
    load_json,
    read_file,
    read_small_text,
    walk,
)
from tui.core.inspect import inspect_path
from tui.core.metrics import MAX_COLUMNS, compute_metrics
from tui.core.model import Metric
from tui.core.process import read_lock
from tui.core.scan import scan
from tui.core.text import format_bytes, format_count
from tui.core.weights import summarize_weights

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and /dev/zero are POSIX")

READ_NAMES = ("trainer_state.json", "config.json", "tokenizer_config.json", "vocab.txt", "tokenizer.json",
              "ckpt_manifest.json", "train_state.json", "latest", "model.safetensors.index.json")  # fmt: skip


@pytest.fixture(autouse=True)
def _remove_deep_trees(tmp_path):
    """pytest's own clean-up recurses (shutil.rmtree on 3.11): remove what a test left with ours."""
    yield
    from tui.core.trash import remove_tree

    for child in tmp_path.iterdir():
        remove_tree(child)


def within(seconds: float, fn, *args, **kwargs):
    """``fn(*args)`` run on a thread; fails (rather than hanging the suite) when it takes longer."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised on the test's thread
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{getattr(fn, '__name__', fn)} still running after {seconds} s (a hang)"
    if "error" in box:
        raise box["error"]
    return box["value"]


def _checkpoint(root: Path) -> Path:
    ck = root / "run" / "checkpoint-10"
    ck.mkdir(parents=True)
    s.write_hf_checkpoint(ck, 10, best_metric=0.5, evals={10: 0.5})
    s.write_tokenizer(ck)
    return ck


# --- the readers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "/dev/urandom"])
def test_readers_refuse_fifos_and_devices_without_blocking(tmp_path, special):
    path = tmp_path / "trainer_state.json"
    os.mkfifo(path) if special == "fifo" else path.symlink_to(special)
    data, problem = within(5, load_json, path)
    assert data is None and problem == "trainer_state.json: not a regular file"
    assert within(5, read_small_text, path) is None
    with pytest.raises(ValueError):
        within(5, read_file, path, 100)
    holder = within(5, read_lock, path)
    assert holder is not None and holder.live  # a .lock that is a FIFO still says someone writes


def test_reads_are_capped_by_bytes_read(tmp_path):
    path = tmp_path / "big.json"
    with open(path, "wb") as f:
        f.truncate(64 << 20)  # sparse
    assert len(read_file(path, 1000)) == 1001
    data, problem = load_json(path, limit=1 << 20)
    assert data is None and "larger than 1 MiB" in problem


def test_vocab_without_newline_is_refused_past_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(summaries, "TOKENIZER_LIMIT", 1 << 20)
    ck = tmp_path / "m"
    ck.mkdir()
    with open(ck / "vocab.txt", "wb") as f:
        f.truncate(8 << 20)
    count, _, problem = summaries._count_vocab_lines(ck / "vocab.txt")
    assert count is None and "larger than 1 MiB" in problem
    (ck / "vocab.txt").write_bytes(b"[PAD]\n\nhello\r\nworld")
    assert summaries._count_vocab_lines(ck / "vocab.txt")[0] == 3


def test_walk_is_iterative_and_stops_at_its_depth(tmp_path):
    s.deep_folders(tmp_path, 1500)  # deeper than the recursion limit
    skipped: list[str] = []
    depths = [dirpath.count(os.sep) for dirpath, _, _ in walk(tmp_path, max_depth=100, skipped=skipped)]
    assert len(depths) == 101 and len(skipped) == 1
    assert sum(1 for _ in walk(tmp_path, max_depth=4096)) == 1501


def test_walk_lists_links_but_never_enters_them(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("x")
    (tmp_path / "loop").symlink_to(".")
    (tmp_path / "self").symlink_to("self")
    seen = list(walk(tmp_path))
    assert [p for p, _, _ in seen] == [str(tmp_path), str(tmp_path / "a")]
    assert sorted(seen[0][1]) == ["a", "loop"] and seen[0][2] == ["self"]


# --- whole commands on hostile trees ---------------------------------------------------------------------


@pytest.mark.parametrize("name", READ_NAMES)
@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_scan_inspect_and_plan_never_hang_on_a_special_file(tmp_path, name, special):
    ck = _checkpoint(tmp_path)
    (tmp_path / "run" / "run.json").write_text('{"format": "ckpt-tui/run/1"}')
    target = ck / name
    if target.exists():
        target.unlink()
    os.mkfifo(target) if special == "fifo" else target.symlink_to(special)
    infos = within(10, scan, tmp_path)
    assert [i.path for i in infos] == ["run/checkpoint-10"]
    within(10, inspect_path, tmp_path, ck)
    within(10, actions.plan_delete, tmp_path, ["run/checkpoint-10"])


def test_verify_of_a_manifest_entry_linked_to_dev_zero_ends(tmp_path):
    ck = _checkpoint(tmp_path)
    s.write_manifest(ck, kind="step-checkpoint", step=10)
    manifest = json.loads((ck / "ckpt_manifest.json").read_text())
    manifest["files"]["model.safetensors"]["size"] = 0  # /dev/zero's stat size: the size check passes
    (ck / "ckpt_manifest.json").write_text(json.dumps(manifest))
    (ck / "model.safetensors").unlink()
    (ck / "model.safetensors").symlink_to("/dev/zero")
    out = within(10, inspect_path, tmp_path, ck, verify_hashes=True)
    assert any("model.safetensors" in p for p in out.info.problems)


def test_a_tree_990_levels_deep_is_walked_without_crashing(tmp_path):
    ck = _checkpoint(tmp_path)
    s.deep_folders(ck, 990)
    (tmp_path / "deep").mkdir()
    s.deep_folders(tmp_path / "deep", 990)
    errors: list[str] = []
    from tui.core.scan import iter_checkpoints

    infos = list(iter_checkpoints(tmp_path, errors=errors))
    assert [i.path for i in infos] == ["run/checkpoint-10"]
    assert any("nested deeper than" in p for p in infos[0].problems)
    assert any("nested deeper than" in e for e in errors)
    out = inspect_path(tmp_path, ck)
    assert any("deeper than" in p for p in out.info.problems)
    plan = actions.plan_delete(tmp_path, ["run/checkpoint-10", "deep"])
    assert plan is not None


def test_a_looping_link_does_not_hide_the_weights(tmp_path):
    ck = _checkpoint(tmp_path)
    (ck / "loop.safetensors").symlink_to("loop.safetensors")
    (ck / "a.bin").symlink_to("b.bin")
    (ck / "b.bin").symlink_to("a.bin")
    summary = summarize_weights(ck)
    assert summary.tensors and not any("cannot list" in p for p in summary.problems)
    info = scan(tmp_path)[0]
    assert info.tensors == summary.tensors


# --- numbers ----------------------------------------------------------------------------------------------

HUGE = int("9" * 401)


@pytest.mark.parametrize("value", [HUGE, -HUGE, 2**63, float("inf"), float("nan"), True, "3", None, [1]])
def test_json_numbers_out_of_range_or_of_the_wrong_type_are_none(value):
    assert json_number(value) is None
    assert json_int(value) is None


def test_json_numbers_in_range_pass():
    assert json_int(2**63 - 1) == 2**63 - 1 and json_number(0.5) == 0.5 and json_number(-3) == -3
    assert Metric.of("loss", HUGE) is None and Metric.of("loss", 0.1, HUGE).step is None


def test_formats_of_numbers_no_float_holds():
    assert format_bytes(HUGE) == "?" and format_bytes(float("inf")) == "?"
    assert format_count(HUGE) == "?" and format_count(10**9) == "1.0B"


@pytest.mark.parametrize("spelling", ["9" * 401, "1e999", "NaN", '"x"', "-" + "9" * 401])
def test_a_state_of_unusable_numbers_reads_as_missing_values(tmp_path, spelling):
    ck = _checkpoint(tmp_path)
    text = (ck / "trainer_state.json").read_text()
    for key in ("epoch", "best_metric", "global_step"):
        text = text.replace(f'"{key}": ', f'"{key}": {spelling}, "_{key}": ', 1)
    (ck / "trainer_state.json").write_text(text)
    info = scan(tmp_path)[0]
    assert info.epoch is None and info.step == 10  # the step from the folder name
    inspect_path(tmp_path, ck).to_json()


# --- fold CSVs ----------------------------------------------------------------------------------------


def _fold(tmp_path: Path, text: str, k: int = 0) -> None:
    (tmp_path / f"valid_df_fold_{k}.csv").write_text(text)


@pytest.mark.parametrize("value", ["inf", "-1", "nan", "9" * 401, "x"])
def test_a_probability_that_is_not_one_is_the_folds_error(tmp_path, value):
    _fold(tmp_path, f"label,prediction,prob_a,prob_b\na,a,{value},0.5\nb,b,0.1,0.9\n")
    _fold(tmp_path, "label,prediction,prob_a,prob_b\na,a,0.9,0.1\n", 1)
    got = compute_metrics(tmp_path)
    assert "not a probability" in got["folds"]["0"]["error"] and got["oof"]["n"] == 1


def test_huge_probabilities_are_scaled_not_overflowed(tmp_path, recwarn):
    _fold(tmp_path, "label,prediction,prob_a,prob_b\na,a,1e308,1e308\nb,b,1e-308,1e308\n")
    got = compute_metrics(tmp_path)
    assert got["folds"]["0"]["log_loss"] == pytest.approx(0.5 * 0.6931471805599453)
    assert got["problems"] == [] and not [w for w in recwarn if "sum to one" in str(w.message)]


@pytest.mark.parametrize(
    "rows, why",
    [("a,a,0.9,0.1\nc,b,0.1,0.9\n", "label 'c' has no probability column"),
     ("a,a,0,0\nb,b,0.1,0.9\n", "1 row(s) with every probability 0")],
)  # fmt: skip
def test_log_loss_null_says_why(tmp_path, rows, why):
    _fold(tmp_path, "label,prediction,prob_a,prob_b\n" + rows)
    got = compute_metrics(tmp_path)
    assert got["folds"]["0"]["log_loss"] is None and got["folds"]["0"]["accuracy"] is not None
    assert got["problems"] == [f"fold 0: log_loss not computed: {why}", f"oof: log_loss not computed: {why}"]


def test_too_many_columns_is_refused_before_reading(tmp_path):
    header = ",".join(["label", "prediction"] + [f"prob_{i}" for i in range(MAX_COLUMNS + 1)])
    _fold(tmp_path, header + "\n")
    _fold(tmp_path, "label,prediction\na,a\n", 1)
    got = within(10, compute_metrics, tmp_path)
    assert f"more than {MAX_COLUMNS}" in got["folds"]["0"]["error"]


def test_values_past_the_budget_are_refused(tmp_path, monkeypatch):
    from tui.core import metrics

    monkeypatch.setattr(metrics, "MAX_VALUES", 1000)
    monkeypatch.setattr(metrics, "_CHUNK_ROWS", 100)
    _fold(tmp_path, "label,prediction,prob_a\n" + "a,a,1\n" * 400)
    _fold(tmp_path, "label,prediction,prob_a\n" + "a,a,1\n" * 100, 1)
    got = compute_metrics(tmp_path)
    assert "more than 1,000 values" in got["folds"]["0"]["error"] and got["folds"]["1"]["n"] == 100
    assert got["problems"] == [
        "fold 1: log_loss not computed: one probability column: a log loss needs two classes or more",
        "oof: log_loss not computed: one probability column: a log loss needs two classes or more",
    ]


# --- counts, not floods ---------------------------------------------------------------------------------


def test_five_thousand_missing_shards_are_one_line(tmp_path):
    n = 5000
    s.write_safetensors(tmp_path / f"model-00001-of-{n:05d}.safetensors", {"w0": ("F32", (2,))})
    weight_map = {f"w{i}": f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)}
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    summary = within(10, summarize_weights, tmp_path)
    assert len(summary.problems) <= 21
    assert any(
        p.startswith("4999 missing shards named in index: model-00002-of-05000.safetensors")
        for p in summary.problems
    )


def test_a_manifest_of_thousands_of_missing_files_is_counted(tmp_path):
    from tui.core import commit

    (tmp_path / "a.bin").write_bytes(b"x")
    files = {f"f{i}.bin": {"size": 1, "sha256": "0" * 64} for i in range(3000)}
    files.update(
        {f"g{i}.bin": {"size": HUGE, "sha256": "0" * 64} for i in range(100)}
        | {"a.bin": {"size": 2, "sha256": ""}}
    )
    for i in range(100):
        (tmp_path / f"g{i}.bin").write_bytes(b"")
    manifest = {"format": "ckpt-tui/manifest/1", "kind": "promoted", "files": files}
    problems = commit.verify(tmp_path, manifest=manifest)
    assert problems[0].startswith("3000 files listed in ckpt_manifest.json but missing: f0.bin, f1.bin")
    assert len(problems) == 21 and problems[-1] == "... and 82 more problems of this kind"


def test_a_trash_entry_naming_a_lone_surrogate_is_refused_not_raised(tmp_path):
    from tui.core.trash import Trash

    folder = tmp_path / ".ckpt-trash" / "20260101T000000Z-00001"
    (folder / "item").mkdir(parents=True)
    (folder / "entry.json").write_text('{"id": "20260101T000000Z-00001", "original_path": "\\ud800/x"}')
    (entry,) = Trash(tmp_path).list()
    assert entry.problems and "not a file name" in entry.problems[0]


def test_du_counts_a_trash_deeper_than_the_stack(tmp_path):
    from tui.core.du import disk_report

    item = tmp_path / ".ckpt-trash" / "20260101T000000Z-00001" / "item"
    item.mkdir(parents=True)
    s.deep_folders(item, 1500)
    fd = os.open(item, os.O_RDONLY)  # a file at the bottom: it must be counted
    for _ in range(1500):
        new = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = new
    leaf = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(leaf, b"x" * 1000)
    os.close(leaf)
    os.close(fd)
    report = disk_report(tmp_path)
    assert report.to_json()["totals"]["trash_bytes"] >= 1000


def test_remove_tree_deletes_a_deep_read_only_tree_and_never_a_link_target(tmp_path):
    from tui.core.trash import remove_tree

    top = tmp_path / "entry"
    top.mkdir()
    s.deep_folders(top, 1500)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    (top / "d" / "link").symlink_to(outside)
    (top / "d" / "d").chmod(0o500)  # read-only folder on the way
    remove_tree(top)
    assert not top.exists() and (outside / "keep").read_text() == "x"
