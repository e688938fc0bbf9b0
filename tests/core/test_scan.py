"""Scanner: classification of every kind, run/best/fold/step fields, and the tree-level hostile corpus
(symlink loops, non-UTF-8 names, unreadable folders, skipped folders)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fixtures import synthetic as s
from tui.core import scan as scan_mod
from tui.core.classify import fold_from_path
from tui.core.model import Metric
from tui.core.scan import iter_checkpoints, scan
from tui.core.text import json_safe


def by_path(root: Path) -> dict:
    return {i.path: i for i in scan(root)}


def test_make_tree_reports_every_checkpoint_with_its_numbers(tmp_path):
    expected = s.make_tree(tmp_path, 10)
    got = by_path(tmp_path)
    assert set(got) == {e.path for e in expected}
    for e in expected:
        info = got[e.path]
        assert info.kind == e.kind, e.path
        assert info.dtypes == e.dtypes, e.path
        assert info.step == e.step, e.path
        assert info.fold == e.fold, e.path
        assert info.complete, (e.path, info.problems)
        if e.dtypes is not None:
            assert info.parameters == sum(e.dtypes.values())
        if "best" in e.extra:
            assert info.best == e.extra["best"], e.path


def test_size_bytes_is_the_sum_of_the_files(tmp_path):
    s.write_hf_checkpoint(tmp_path / "out" / "checkpoint-3", 3)
    info = by_path(tmp_path)["out/checkpoint-3"]
    total = sum(p.stat().st_size for p in (tmp_path / "out" / "checkpoint-3").rglob("*") if p.is_file())
    assert info.size_bytes == total
    assert info.run == "out"
    assert info.mtime is not None


def test_trainer_run_layout(tmp_path):
    s.write_run(tmp_path, "run1", lora=True, promote_fold=1, steps=(4, 8))
    got = by_path(tmp_path)
    fold0, fold1 = got["run1/tiny-bert_fold_0"], got["run1/tiny-bert_fold_1"]
    for k, info in ((0, fold0), (1, fold1)):
        assert info.kind == "hf-model" and info.complete and not info.in_progress
        assert info.fold == k and info.step == 8 and info.best and info.run == "run1"
        assert info.metric == Metric("f1_macro", pytest.approx(0.8 - k / 100), 8)  # evaluated at its step
    adapter = got["run1/tiny-bert_fold_0/adapter"]
    assert adapter.kind == "peft-adapter" and adapter.fold == 0 and adapter.complete
    assert fold0.size_bytes > adapter.size_bytes > 0  # the holder counts what deleting it frees
    step = got["run1/checkpoints/fold_1/step_4"]
    assert (step.kind, step.fold, step.step, step.best, step.complete) == (
        "accelerate-state",
        1,
        4,
        False,
        True,
    )
    assert step.epoch == pytest.approx(0.5)
    # promote marks the source and the export; nothing else
    assert fold1.promoted and got["run1/promoted/tiny-bert_fold_1"].promoted
    assert not fold0.promoted and got["run1/tiny-bert_fold_1/adapter"].promoted


def test_run_checkpoint_without_manifest_is_in_progress(tmp_path):
    run = s.write_run(tmp_path, "run1", folds=1, steps=(2,))
    (run / "checkpoints" / "fold_0" / "step_2" / "ckpt_manifest.json").unlink()
    info = by_path(tmp_path)["run1/checkpoints/fold_0/step_2"]
    assert info.in_progress and not info.complete
    assert any("ckpt_manifest.json" in p and "never committed" in p for p in info.problems)


def test_lock_is_named_in_the_in_progress_problem(tmp_path):
    run = s.write_run(tmp_path, "run1", folds=1, steps=(2,), lock=True)
    (run / "checkpoints" / "fold_0" / "step_2" / "ckpt_manifest.json").unlink()
    got = by_path(tmp_path)
    info = got["run1/checkpoints/fold_0/step_2"]
    assert info.in_progress and any(f"pid {os.getpid()}" in p for p in info.problems)
    assert got["run1/tiny-bert_fold_0"].complete  # committed folders stay complete under a lock


def test_a_lock_from_another_host_is_judged_by_its_heartbeat(tmp_path):
    import json
    import time

    run = s.write_run(tmp_path, "run1", folds=1, steps=(2,), lock=True)
    (run / "checkpoints" / "fold_0" / "step_2" / "ckpt_manifest.json").unlink()
    lock = {"pid": 4242, "host": "node-elsewhere", "heartbeat_s": 60}
    (run / ".lock").write_text(json.dumps({**lock, "heartbeat": time.time() - 20}))
    problems = by_path(tmp_path)["run1/checkpoints/fold_0/step_2"].problems
    assert any("run held by pid 4242 on node-elsewhere (heartbeat 20 s ago)" in p for p in problems)
    (run / ".lock").write_text(json.dumps({**lock, "heartbeat": time.time() - 7200}))
    problems = by_path(tmp_path)["run1/checkpoints/fold_0/step_2"].problems
    assert any("stale .lock (pid 4242 on node-elsewhere: no heartbeat for 7200 s)" in p for p in problems)


def test_leftover_temp_and_old_folders(tmp_path):
    s.write_hf_model(tmp_path / "run" / ".bert_fold_2.tmp", tokenizer=False)
    s.write_accelerate_state(tmp_path / "run" / ".step_7.old")
    (tmp_path / "run" / ".step_9.tmp").mkdir()  # empty: named like a checkpoint, still a leftover
    got = by_path(tmp_path)
    tmp = got["run/.bert_fold_2.tmp"]
    assert tmp.kind == "hf-model" and tmp.in_progress and not tmp.complete and tmp.fold == 2
    old = got["run/.step_7.old"]
    assert old.kind == "accelerate-state" and old.step == 7 and old.in_progress
    assert got["run/.step_9.tmp"].in_progress
    assert all("leftover" in p for i in got.values() for p in i.problems)


def test_skipped_folders_are_never_entered(tmp_path):
    for name in (".ckpt-trash", ".git", "node_modules", "__pycache__", ".venv"):
        s.write_hf_model(tmp_path / name / "m", tokenizer=False)
    s.write_hf_model(tmp_path / "kept", tokenizer=False)
    assert list(by_path(tmp_path)) == ["kept"]


def test_symlink_loops_terminate_and_report_each_checkpoint_once(tmp_path):
    s.write_hf_model(tmp_path / "a" / "m", tokenizer=False)
    os.symlink(tmp_path, tmp_path / "a" / "loop")  # a -> root -> a -> ...
    os.symlink(tmp_path / "a", tmp_path / "alias")  # same folder twice
    os.symlink("self", tmp_path / "self")  # a link to itself
    infos = scan(tmp_path)
    assert len(infos) == 1 and infos[0].kind == "hf-model"


def test_symlinks_out_of_the_root_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    s.write_hf_model(outside / "m", tokenizer=False)
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "link")
    assert scan(root) == []


def test_unreadable_folder_is_reported_and_skipped(tmp_path, monkeypatch):
    s.write_hf_model(tmp_path / "ok", tokenizer=False)
    s.write_hf_model(tmp_path / "secret" / "m", tokenizer=False)
    real = os.scandir

    def scandir(path="."):
        if os.path.basename(path) == "secret":
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(scan_mod.os, "scandir", scandir)
    errors: list[str] = []
    infos = list(iter_checkpoints(tmp_path, errors=errors))
    assert [i.path for i in infos] == ["ok"]
    assert errors == ["secret: cannot list (Permission denied)"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_chmod_000_folder(tmp_path):
    s.write_hf_model(tmp_path / "secret" / "m", tokenizer=False)
    os.chmod(tmp_path / "secret", 0)
    try:
        errors: list[str] = []
        assert list(iter_checkpoints(tmp_path, errors=errors)) == [] and errors
    finally:
        os.chmod(tmp_path / "secret", 0o755)


def test_non_utf8_names_round_trip_and_print_as_json(tmp_path):
    raw = os.fsencode(str(tmp_path)) + b"/ckpt-\xff\xfe"
    os.mkdir(raw)
    s.write_hf_model(Path(os.fsdecode(raw)), tokenizer=False)
    s.write_safetensors(Path(os.fsdecode(raw + b"/../lone-\xe9.safetensors")), {"w": ("F16", (4,))})
    infos = scan(tmp_path)
    assert len(infos) == 2
    for info in infos:
        assert os.path.exists(tmp_path / info.path)  # surrogateescape keeps the real bytes
        text = json.dumps({"path": json_safe(info.path)}, ensure_ascii=False)
        text.encode("utf-8")  # no lone surrogates survive
        assert "\\xff" in text or "\\xe9" in text


def test_cancel_stops_the_walk(tmp_path):
    s.make_tree(tmp_path, 30)
    seen = []
    for info in iter_checkpoints(tmp_path, cancelled=lambda: len(seen) >= 3):
        seen.append(info)
    assert 3 <= len(seen) < 30


def test_best_follows_the_newest_trainer_state_and_stale_absolute_paths(tmp_path):
    out = tmp_path / "out"
    # checkpoint-2 thought it was best when written; checkpoint-6 (newest) says checkpoint-4, with the
    # absolute path of a machine where the run used to live.
    s.write_hf_checkpoint(out / "checkpoint-2", 2, best_model_checkpoint="out/checkpoint-2")
    s.write_hf_checkpoint(out / "checkpoint-4", 4, best_model_checkpoint="/gone/cluster/out/checkpoint-4")
    s.write_hf_checkpoint(out / "checkpoint-6", 6, best_model_checkpoint="/gone/cluster/out/checkpoint-4")
    got = by_path(tmp_path)
    assert [p for p, i in got.items() if i.best] == ["out/checkpoint-4"]


def test_metric_of_hf_checkpoints_from_log_history(tmp_path):
    out = tmp_path / "out"
    evals = {2: 0.5, 4: 0.75}
    s.write_hf_checkpoint(
        out / "checkpoint-2", 2, evals={2: 0.5}, best_metric=0.5, best_model_checkpoint="out/checkpoint-2"
    )
    s.write_trainer_state(
        out / "checkpoint-4",
        global_step=4,
        best_metric=0.75,
        best_global_step=4,
        best_model_checkpoint="out/checkpoint-4",
        evals=evals,
    )
    s.write_hf_model(out / "checkpoint-4", tokenizer=False)
    s.write_torch_zip(out / "checkpoint-4" / "optimizer.pt")
    got = by_path(tmp_path)
    assert got["out/checkpoint-4"].metric == Metric("f1_macro", 0.75, 4)
    assert got["out/checkpoint-4"].best and not got["out/checkpoint-2"].best


@pytest.mark.parametrize(
    "rel, fold",
    [
        ("run/deberta_fold_3", 3),
        ("run/fold3", 3),
        ("run/fold-4/x", 4),
        ("run/checkpoints/fold_1/step_20", 1),
        ("run/folder", None),
        ("scaffold9", None),
    ],
)
def test_fold_from_names(rel, fold):
    assert fold_from_path(rel) == fold


def test_deepspeed_inside_an_hf_checkpoint_is_reported_nested(tmp_path):
    ck = tmp_path / "out" / "checkpoint-10"
    s.write_hf_checkpoint(ck, 10)
    s.write_deepspeed(ck, 10, stage=3, world_size=2)
    got = by_path(tmp_path)
    assert got["out/checkpoint-10"].kind == "hf-checkpoint"
    ds = got["out/checkpoint-10/global_step10"]
    assert ds.kind == "deepspeed" and ds.step == 10 and ds.complete and ds.tensors is None


def test_accelerate_state_under_deepspeed_is_one_unit(tmp_path):
    st = tmp_path / "ckpts" / "step_5"
    s.write_accelerate_state(st, world_size=2)
    s.write_deepspeed(st, 0, stage=3)  # tag folder global_step0 + latest
    os.rename(st / "global_step0", st / "pytorch_model")
    (st / "latest").write_text("pytorch_model")
    got = by_path(tmp_path)
    assert list(got) == ["ckpts/step_5"] and got["ckpts/step_5"].complete
    (st / "latest").write_text("pytorch_model_gone")
    assert any("latest" in p for p in by_path(tmp_path)["ckpts/step_5"].problems)


def test_loose_files(tmp_path):
    s.write_lightning_ckpt(tmp_path / "lt" / "epoch=3-step=120.ckpt")
    s.write_torch_zip(tmp_path / "ms" / "fer-5_449.ckpt")
    s.write_torch_zip(tmp_path / "best_model.ckpt")
    s.write_torch_zip(tmp_path / "weights.bin")
    (tmp_path / "data.bin").write_bytes(b"\x00\x01 not a pickle")
    s.write_safetensors(tmp_path / "emb.safetensors", {"e": ("BF16", (3, 5))})
    got = by_path(tmp_path)
    assert set(got) == {
        "lt/epoch=3-step=120.ckpt",
        "ms/fer-5_449.ckpt",
        "best_model.ckpt",
        "weights.bin",
        "emb.safetensors",
    }
    lt = got["lt/epoch=3-step=120.ckpt"]
    assert (lt.kind, lt.step, lt.epoch) == ("lightning", 120, 3.0)
    ms = got["ms/fer-5_449.ckpt"]
    assert (ms.kind, ms.step, ms.epoch, ms.epoch_step) == ("torch-pickle", None, 5.0, 449)
    assert got["best_model.ckpt"].step is None and got["best_model.ckpt"].epoch is None
    assert got["emb.safetensors"].dtypes == {"BF16": 15}


def test_root_that_is_itself_a_checkpoint(tmp_path):
    s.write_hf_model(tmp_path, tokenizer=False)
    infos = scan(tmp_path)
    assert [(i.path, i.kind) for i in infos] == [(".", "hf-model")]


def test_missing_root_yields_nothing_and_says_why(tmp_path):
    errors: list[str] = []
    assert list(iter_checkpoints(tmp_path / "nope", errors=errors)) == [] and errors


def test_a_symlinked_folder_inside_the_root_is_reported_by_its_real_path(tmp_path):
    # "a_link" sorts before "runs": entered through the link first, the checkpoints were reported under
    # the link's name and lost their `best` mark (keyed by the real path).
    out = tmp_path / "runs" / "hf_out"
    for step in (2, 4):
        s.write_hf_checkpoint(
            out / f"checkpoint-{step}", step, best_metric=0.9, best_model_checkpoint=str(out / "checkpoint-2")
        )
    os.symlink(tmp_path / "runs", tmp_path / "a_link")
    os.symlink(out / "checkpoint-4", out / "a_latest")  # a linked checkpoint folder beside the real one
    got = by_path(tmp_path)
    assert sorted(got) == ["runs/hf_out/checkpoint-2", "runs/hf_out/checkpoint-4"]
    assert got["runs/hf_out/checkpoint-2"].best and not got["runs/hf_out/checkpoint-4"].best
