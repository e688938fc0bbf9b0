"""Pure presentation helpers: no app running."""

from __future__ import annotations

import os

from rich.style import Style

from tui.app import rows, tasks
from tui.core.diff import config_changes, tensor_changes
from tui.core.model import CheckpointInfo, Metric


def info(path: str, **kw) -> CheckpointInfo:
    return CheckpointInfo(path=path, kind=kw.pop("kind", "hf-model"), **kw)


def test_status_is_most_urgent_first():
    assert rows.status_of(info("a", in_progress=True, complete=False, best=True)) == "in progress"
    assert rows.status_of(info("a", problems=["truncated"], complete=False, best=True)) == "broken"
    assert rows.status_of(info("a", problems=["x: unsafe"], complete=False, pickle_scan="unsafe")) == "unsafe"
    assert rows.status_of(info("a", problems=["x: cut"], complete=False, pickle_scan="not verified")) == "broken"
    assert rows.status_of(info("a", promoted=True, best=True)) == "promoted"
    assert rows.status_of(info("a", best=True)) == "best"
    assert rows.status_of(info("a")) == "complete"
    assert "broken" in rows.badge(info("a", complete=False), lambda css: Style()).plain


def test_metric_sort_puts_best_first_for_both_directions():
    f1 = [info(f"r/c{v}", metric=Metric("f1_macro", v)) for v in (0.5, 0.9, 0.7)]
    assert [i.path for i in sorted(f1, key=rows.sort_key("metric"))] == ["r/c0.9", "r/c0.7", "r/c0.5"]
    loss = [info(f"r/c{v}", metric=Metric("eval_loss", v)) for v in (0.5, 0.9, 0.7)]
    assert [i.path for i in sorted(loss, key=rows.sort_key("metric"))] == ["r/c0.5", "r/c0.7", "r/c0.9"]
    unknown = info("r/none")
    assert sorted([unknown, *f1], key=rows.sort_key("metric"))[-1] is unknown


def test_step_and_size_sorts():
    items = [
        info("r/a", step=10, size_bytes=5),
        info("r/b", step=2, size_bytes=50),
        info("r/c", size_bytes=1),
    ]
    assert [i.path for i in sorted(items, key=rows.sort_key("step"))] == ["r/b", "r/a", "r/c"]
    assert [i.path for i in sorted(items, key=rows.sort_key("size"))] == ["r/b", "r/a", "r/c"]


def test_grouping_by_run_then_parent():
    assert rows.run_of(info("runs/r1/fold_0", run="runs/r1")) == "runs/r1"
    assert rows.name_in_run(info("runs/r1/fold_0", run="runs/r1")) == "fold_0"
    assert rows.run_of(info("hf_out/checkpoint-2")) == "hf_out"
    assert rows.run_of(info("model.safetensors", kind="safetensors-file")) == "."


def test_filter_matches_every_word_in_path_kind_or_status():
    i = info("run1/checkpoints/fold_0/step_4", kind="accelerate-state", complete=False)
    assert rows.matches(i, "")
    assert rows.matches(i, "fold_0 accel")
    assert rows.matches(i, "BROKEN")
    assert not rows.matches(i, "fold_1")


def test_diff_rows_show_the_core_changes_with_the_missing_side_as_empty_set():
    a = {"hidden": 8, "labels": {"0": "neg"}, "only_a": 1}
    b = {"hidden": 16, "labels": {"0": "neg", "1": "pos"}}
    diff = {k: (x, y) for k, x, y in rows.config_rows(config_changes(a, b))}
    assert diff == {"hidden": (8, 16), "labels.1": ("∅", "pos"), "only_a": (1, "∅")}
    ta = {"w": ("F32", (2, 3)), "b": ("F32", (3,)), "x": ("F16", (1,))}
    tb = {"w": ("F32", (2, 3)), "b": ("BF16", (3,)), "y": ("F16", (1,))}
    assert rows.tensor_rows(tensor_changes(ta, tb)) == [
        ("b", "F32 [3]", "BF16 [3]"),
        ("x", "F16 [1]", "∅"),
        ("y", "∅", "F16 [1]"),
    ]


def test_tree_signature_changes_when_a_folder_appears(tmp_path):
    (tmp_path / "run" / "ckpt-1").mkdir(parents=True)
    before = tasks.tree_signature(tmp_path)
    assert tasks.tree_signature(tmp_path) == before
    (tmp_path / "run" / "ckpt-2").mkdir()
    os.utime(tmp_path / "run", ns=(1, 1))  # even a folder whose mtime went backwards counts as changed
    assert tasks.tree_signature(tmp_path) != before


def test_tree_signature_ignores_the_trash(tmp_path):
    (tmp_path / ".ckpt-trash").mkdir()
    before = tasks.tree_signature(tmp_path)
    (tmp_path / ".ckpt-trash" / "entry").mkdir()
    assert tasks.tree_signature(tmp_path) == before


def test_batched_sends_what_arrived_in_a_growing_interval():
    items = [info(f"p{i}") for i in range(100)]
    ticks = iter(range(1000))  # one second per clock reading: one at the start, then one per row
    batches = list(tasks.batched(iter(items), interval=2, longest=8, clock=lambda: next(ticks)))
    sizes = [len(b) for b in batches]
    assert sizes[:5] == [2, 4, 8, 8, 8]  # intervals 2, 4, 8 seconds, then no longer than 8
    assert sum(sizes) == 100 and [i for b in batches for i in b] == items
    assert list(tasks.batched(iter(items), cancelled=lambda: True)) == []


def test_a_scan_faster_than_the_first_interval_is_one_batch():
    items = [info(f"p{i}") for i in range(1000)]
    assert [len(b) for b in tasks.batched(iter(items), interval=60)] == [1000]
    assert [len(b) for b in tasks.batched(iter(items), interval=60, most=400)] == [400, 400, 200]  # ... bounded


def test_a_scan_batch_outdates_the_detail_of_the_rows_and_runs_it_changed_only():
    from tui.app.app import _touched
    from tui.core.model import run_of

    moved_old, moved_new = info("a/checkpoint-1"), info("b/checkpoint-1")
    added = info("c/checkpoint-2")
    keys = _touched([(moved_old, moved_new), (None, added)])
    runs = {run_of(moved_old), run_of(moved_new), run_of(added)}
    assert keys == {"b/checkpoint-1", "c/checkpoint-2", *(f"group:{r}" for r in runs)}
    assert len(runs) == 3 and "group:" + run_of(info("d/checkpoint-1")) not in keys
