"""Best marks: the walk only notes which trainer_state.json files decide a folder's best child; they are
parsed by whoever reads a checkpoint under it (a forked child on a big first scan), and a checkpoint's mark
comes from its own state and its parent folder's decision alone, in the scan as in ``scan.describe``."""

from __future__ import annotations

import os

from tests.fixtures import synthetic as s
from tui.core import cache, scan, summaries


def _count_state_reads(monkeypatch) -> list[str]:
    parsed: list[str] = []
    real = summaries._state_facts

    def spy(path, *, lean):
        parsed.append(os.path.basename(os.path.dirname(path)))
        return real(path, lean=lean)

    monkeypatch.setattr(summaries, "_state_facts", spy)
    return parsed


def test_the_walk_parses_no_trainer_state_and_the_reads_decide_best(tmp_path, monkeypatch):
    out = tmp_path / "out"
    for step in (2, 4, 6):
        s.write_hf_checkpoint(out / f"checkpoint-{step}", step, best_model_checkpoint="out/checkpoint-4")
    s.write_hf_model(tmp_path / "model_fold_0")
    s.write_trainer_state(
        tmp_path / "model_fold_0", global_step=6, best_model_checkpoint=str(tmp_path / "model_fold_0")
    )
    cache.configure(enabled=False)
    parsed = _count_state_reads(monkeypatch)
    try:
        state = scan._Scan(str(tmp_path), str(tmp_path), lambda: False, [])
        items = list(scan._visit(state, str(tmp_path), None, 0.0))
        assert len(items) == 4 and parsed == []  # walked: four checkpoints, no trainer_state read
        infos = [info for item in items for info in item.finish()]
    finally:
        cache.configure()
    assert {i.path: i.best for i in infos} == {
        "model_fold_0": True,
        "out/checkpoint-2": False,
        "out/checkpoint-4": True,
        "out/checkpoint-6": False,
    }
    # out's decision reads its two newest states once, each checkpoint its own once more at most
    assert sorted(set(parsed)) == ["checkpoint-2", "checkpoint-4", "checkpoint-6", "model_fold_0"]
    assert parsed.count("checkpoint-6") == 1 and parsed.count("checkpoint-4") == 1


def test_a_best_mark_comes_from_the_parents_decision_alone_as_describe_says(tmp_path):
    # out/ is an output folder whose own (newest) trainer_state names a sibling of out/: a folder the walk
    # reaches after out/ ("z_fold" sorts after "out"). Only z_fold's parent (tmp_path, no checkpoint-N
    # under it) or its own state may call it best: neither does.
    out = tmp_path / "out"
    s.write_hf_checkpoint(out / "checkpoint-2", 2, best_model_checkpoint="out/checkpoint-2")
    s.write_trainer_state(out, global_step=9, best_model_checkpoint="../z_fold")
    s.write_hf_model(tmp_path / "z_fold")
    s.write_trainer_state(tmp_path / "z_fold", global_step=9)
    scanned = {i.path: i.best for i in scan.scan(tmp_path)}
    assert scanned == {"out/checkpoint-2": False, "z_fold": False}
    for rel, best in scanned.items():
        described = scan.describe(tmp_path, tmp_path / rel)
        assert described is not None and described.best == best, rel


def test_our_step_folders_best_is_read_from_the_newest_whole_train_state(tmp_path):
    fold = tmp_path / "run1" / "checkpoints" / "fold_0"
    for step, best in ((2, 2), (4, 2), (6, 6)):
        s.write_accelerate_state(
            fold / f"step_{step}", train_state={"global_step": step, "best_global_step": best}
        )
    (fold / "step_6" / "train_state.json").write_text('{"global_step": 6, "best_glo')  # half-written
    scanned = {i.path.rsplit("/", 1)[-1]: i.best for i in scan.scan(tmp_path)}
    assert scanned == {"step_2": True, "step_4": False, "step_6": False}  # step_4 speaks, not step_6
    for name, best in scanned.items():
        assert scan.describe(tmp_path, fold / name).best == best


def test_checkpoints_inside_an_output_folder_that_holds_a_model_as_describe_says(tmp_path):
    # Trainer's save_model + save_state: out/ is an hf-model whose own trainer_state (the newest) names
    # checkpoint-4; each checkpoint-N inside it named itself best when it was written
    out = tmp_path / "out"
    s.write_hf_model(out)
    s.write_trainer_state(out, global_step=8, best_model_checkpoint="out/checkpoint-4")
    for step in (2, 4, 6):
        s.write_hf_checkpoint(out / f"checkpoint-{step}", step, best_model_checkpoint=f"out/checkpoint-{step}")
    scanned = {i.path: i.best for i in scan.scan(tmp_path) if i.path.startswith("out/")}
    assert scanned == {"out/checkpoint-2": False, "out/checkpoint-4": True, "out/checkpoint-6": False}
    for rel, best in scanned.items():
        assert scan.describe(tmp_path, tmp_path / rel).best == best, rel
