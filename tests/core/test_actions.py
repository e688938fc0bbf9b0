import json
import os
import socket

import pytest

from tests.fixtures.ops import info, later_clock, make_checkpoint, tree_hashes, write_file
from tests.fixtures.synthetic import write_safetensors
from tui.core import actions
from tui.core.actions import execute, plan_delete, plan_slim, plan_trash_empty, undo_last
from tui.core.commit import atomic_dir, read_manifest, verify
from tui.core.names import TRASH_DIR
from tui.core.trash import Trash

CLOCK = later_clock()


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    for step in (10, 20, 30):
        make_checkpoint(r / "run" / f"checkpoint-{step}")
    write_file(tmp_path / "outside" / "precious.bin", b"precious")
    return r


def test_delete_then_undo_is_byte_identical(root):
    before = tree_hashes(root)
    plan = plan_delete(root, ["run/checkpoint-10", "run/checkpoint-20"], [], clock=CLOCK)
    assert [i.path for i in plan.items] == ["run/checkpoint-10", "run/checkpoint-20"]
    assert (
        plan.total_bytes
        == sum(i.bytes for i in plan.items)
        == 2 * (1000 + 580 + 2 + len('{"model_type": "bert"}'))
    )
    assert "Delete 2 items" in plan.summary and ".ckpt-trash" in plan.summary
    result = execute(plan)
    assert result.ok and len(result.trash_ids) == 2
    assert not (root / "run" / "checkpoint-10").exists()
    assert {e.original_path for e in Trash(root).list()} == {"run/checkpoint-10", "run/checkpoint-20"}
    undone = undo_last(root)
    assert undone.ok and len(undone.done) == 2  # one action, one undo
    assert tree_hashes(root) == before


def test_undo_restores_only_the_newest_action(root):
    execute(plan_delete(root, ["run/checkpoint-10"], clock=CLOCK))
    execute(plan_delete(root, ["run/checkpoint-20"], clock=CLOCK))
    undo_last(root)
    assert (root / "run" / "checkpoint-20").exists() and not (root / "run" / "checkpoint-10").exists()
    undo_last(root)
    assert (root / "run" / "checkpoint-10").exists()
    assert "nothing to undo" in undo_last(root).errors[0]


def test_plan_refuses_and_lists_reasons(root, tmp_path):
    os.symlink(tmp_path / "outside", root / "escape")
    infos = [info("run/checkpoint-30", best=True, run="run")]
    plan = plan_delete(
        root, ["run/checkpoint-30", "escape", "../outside", "run/checkpoint-10"], infos, clock=CLOCK
    )
    assert [i.path for i in plan.items] == ["run/checkpoint-10"]
    reasons = {r.path: r.reason for r in plan.refusals}
    assert "best checkpoint" in reasons["run/checkpoint-30"]
    assert "symlink pointing outside" in reasons["escape"]
    assert "outside ROOT" in reasons["../outside"]
    assert "Refused:" in plan.summary
    execute(plan)
    assert (tmp_path / "outside" / "precious.bin").read_bytes() == b"precious"
    assert (root / "escape").is_symlink() and (root / "run" / "checkpoint-30").exists()


def test_nested_paths_are_deleted_once(root):
    plan = plan_delete(root, ["run/checkpoint-10/optimizer.pt", "run/checkpoint-10"], clock=CLOCK)
    assert [i.path for i in plan.items] == ["run/checkpoint-10"]


def test_execute_rechecks_safety(root):
    plan = plan_delete(root, ["run/checkpoint-10", "run/checkpoint-20"], clock=CLOCK)
    # between plan and confirm a trainer starts writing into the run
    write_file(root / "run" / ".lock", json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    result = execute(plan)
    assert not result.ok and len(result.refused) == 2 and "held by pid" in result.refused[0].reason
    assert (root / "run" / "checkpoint-10").exists()


def test_execute_recheck_uses_real_clock_by_default(root):
    plan = plan_delete(root, ["run/checkpoint-10"])  # files just written: refused at plan time
    assert plan.items == [] and "modified" in plan.refusals[0].reason


def test_slim_drops_training_state_and_keeps_weights(root):
    ckpt = root / "run" / "checkpoint-10"
    before = tree_hashes(ckpt)
    plan = plan_slim(root, ["run/checkpoint-10"], clock=CLOCK)
    assert sorted(i.path.split("/")[-1] for i in plan.items) == [
        "optimizer.pt",
        "rng_state.pth",
        "scheduler.pt",
    ]
    assert plan.total_bytes == 580
    result = execute(plan)
    assert result.ok
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    undo_last(root)
    assert tree_hashes(ckpt) == before


def test_slim_rewrites_the_manifest_and_undo_restores_it(tmp_path):
    root = tmp_path / "root"
    target = root / "run" / "checkpoints" / "step_5"
    with atomic_dir(target, kind="step-checkpoint", fields={"step": 5}) as tmp:
        make_checkpoint(tmp)
    before = tree_hashes(target)
    result = execute(plan_slim(root, ["run/checkpoints/step_5"], clock=CLOCK))
    assert result.ok
    manifest = read_manifest(target)
    assert manifest["slimmed"]["dropped"] == ["optimizer.pt", "rng_state.pth", "scheduler.pt"]
    assert "optimizer.pt" not in manifest["files"] and verify(target) == []
    undo_last(root)
    assert tree_hashes(target) == before
    assert "slimmed" not in read_manifest(target)


def test_slim_keeps_zero_shards_without_consolidated_weights(tmp_path):
    root = tmp_path / "root"
    step = root / "step_3"
    write_file(step / "pytorch_model" / "zero_pp_rank_0_mp_rank_00_optim_states.pt", b"o" * 64)
    write_file(step / "pytorch_model" / "zero_pp_rank_0_mp_rank_00_model_states.pt", b"m" * 8)
    write_file(step / "random_states_0.pkl", b"r" * 4)
    plan = plan_slim(root, ["step_3"], clock=CLOCK)
    assert [i.path for i in plan.items] == ["step_3/random_states_0.pkl"]
    assert "ZeRO optimizer shard" in plan.kept[0].reason
    write_safetensors(step / "model.safetensors", {"w": ("F32", (2, 2))})  # consolidated fp32: shards may go
    plan = plan_slim(root, ["step_3"], clock=CLOCK)
    assert sorted(i.path for i in plan.items) == [
        "step_3/pytorch_model/zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "step_3/random_states_0.pkl",
    ]


def test_slim_refuses_files_and_latest_target(tmp_path):
    root = tmp_path / "root"
    make_checkpoint(root / "out" / "global_step9")
    write_file(root / "out" / "latest", "global_step9")
    plan = plan_slim(root, ["out/global_step9", "out/latest"], clock=CLOCK)
    reasons = {r.path: r.reason for r in plan.refusals}
    assert "`latest`" in reasons["out/global_step9"]
    assert "not a folder" in reasons["out/latest"]
    assert plan.summary.startswith("Nothing to slim")


def test_trash_empty_frees_bytes_for_good(root):
    execute(plan_delete(root, ["run/checkpoint-10"], clock=CLOCK))
    plan = plan_trash_empty(root)
    assert len(plan.items) == 1 and plan.total_bytes >= 1580 and "cannot be undone" in plan.summary
    result = execute(plan)
    assert result.bytes == plan.total_bytes
    assert list((root / TRASH_DIR).iterdir()) == []
    assert plan_trash_empty(root).summary == "The trash is empty."


def test_restore_one_entry_by_id(root):
    result = execute(plan_delete(root, ["run/checkpoint-20"], clock=CLOCK))
    back = actions.restore(root, result.trash_ids[0])
    assert back.ok and (root / "run" / "checkpoint-20" / "model.safetensors").exists()
    assert "no such trash entry" in actions.restore(root, result.trash_ids[0]).errors[0]


def test_plan_json_is_serialisable(root):
    plan = plan_delete(root, ["run/checkpoint-10", "missing"], clock=CLOCK)
    data = json.loads(json.dumps(plan.to_json()))
    assert data["items"][0]["path"] == "run/checkpoint-10"
    assert data["refusals"][0] == {"path": "missing", "reason": "does not exist"}


def test_slim_never_follows_links_outside(root, tmp_path):
    outside = tmp_path / "outside"
    write_file(outside / "optimizer.pt", b"keep")
    ckpt = root / "run" / "checkpoint-10"
    os.symlink(outside, ckpt / "linked_dir")
    os.unlink(ckpt / "scheduler.pt")
    os.symlink(outside / "optimizer.pt", ckpt / "scheduler.pt")
    plan = plan_slim(root, ["run/checkpoint-10"], clock=CLOCK)
    assert sorted(i.path for i in plan.items) == [
        "run/checkpoint-10/optimizer.pt",
        "run/checkpoint-10/rng_state.pth",
    ]
    execute(plan)
    assert (outside / "optimizer.pt").read_bytes() == b"keep"


def test_trash_entries_record_who_deleted_them_and_undo_names_what_came_back(root):
    execute(plan_delete(root, ["run/checkpoint-10"], clock=CLOCK), origin="app")
    execute(plan_slim(root, ["run/checkpoint-20"], clock=CLOCK), origin="cli")
    entries = Trash(root).list()
    assert [(e.original_path, e.origin, e.action) for e in entries] == [
        ("run/checkpoint-10", "app", "delete"),
        ("run/checkpoint-20", "cli", "slim"),
    ]
    on_disk = json.loads((root / TRASH_DIR / entries[0].id / "entry.json").read_text())
    assert on_disk["origin"] == "app"
    undone = undo_last(root)  # the newest batch: the slim
    assert undone.ok and undone.summary.startswith("Restored 3 files slimmed from run/checkpoint-20 (")
    undone = undo_last(root)
    assert undone.summary.startswith("Restored run/checkpoint-10 (")


def test_trash_empty_of_chosen_entries_leaves_the_others(root):
    first = execute(plan_delete(root, ["run/checkpoint-10"], clock=CLOCK))
    second = execute(plan_delete(root, ["run/checkpoint-20"], clock=CLOCK))
    plan = plan_trash_empty(root, ids=[second.trash_ids[0], "nope"])
    assert [i.path for i in plan.items] == second.trash_ids
    assert "run/checkpoint-20" in plan.items[0].what
    assert [r.path for r in plan.refusals] == ["nope"] and "Refused: nope" in plan.summary
    execute(plan)
    assert [e.id for e in Trash(root).list()] == first.trash_ids


def test_two_concurrent_deletes_of_one_path_one_wins_the_other_is_refused_in_one_line(tmp_path):
    import threading

    from tests.fixtures.ops import age_tree

    root = tmp_path / "root"
    for round_ in range(20):
        target = make_checkpoint(root / f"run{round_}" / "checkpoint-1")
        age_tree(root)
        barrier, outcomes = threading.Barrier(2), []

        def rm(barrier=barrier, target=target, outcomes=outcomes):
            barrier.wait()
            try:
                outcomes.append(execute(plan_delete(root, [target], clock=later_clock())))
            except Exception as e:  # the race must never raise: record it to fail below
                outcomes.append(e)

        threads = [threading.Thread(target=rm) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(not isinstance(o, Exception) for o in outcomes), outcomes
        assert sum(len(o.done) for o in outcomes) == 1 and not target.exists()
        loser = next(o for o in outcomes if not o.done)
        assert "\n" not in loser.summary
    entries = Trash(root).list()
    assert len(entries) == 20 and not any(e.problems for e in entries)  # no empty entry left behind


def test_a_path_gone_between_plan_and_execute_is_one_line_and_no_debris(root):
    plan = plan_delete(root, ["run/checkpoint-10"], clock=later_clock())
    import shutil

    shutil.rmtree(root / "run" / "checkpoint-10")
    result = execute(plan)
    assert not result.ok and not result.done and "\n" not in result.summary
    assert Trash(root).list() == []
