import json
import os
import socket

import pytest

from tests.fixtures.ops import info, later_clock, make_checkpoint, write_file
from tui.core.safety import Safety
from tui.core.trash import Trash


def safety(root, infos=(), **kw):
    kw.setdefault("clock", later_clock())
    return Safety(root, infos, **kw)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    make_checkpoint(r / "run" / "checkpoint-10")
    make_checkpoint(r / "run" / "checkpoint-20")
    write_file(tmp_path / "outside" / "precious.bin", b"precious")
    return r


def test_plain_checkpoint_is_allowed(root):
    assert safety(root).reasons("run/checkpoint-10") == []
    assert safety(root).reasons(root / "run" / "checkpoint-10") == []


@pytest.mark.parametrize(
    "path, expected",
    [
        ("../outside/precious.bin", "outside ROOT"),
        ("run/../../outside", "outside ROOT"),
        (".", "ROOT itself"),
        ("nope", "does not exist"),
    ],
)
def test_paths_that_escape_or_do_not_exist(root, path, expected):
    assert expected in safety(root).refusal(path)


def test_absolute_path_outside_root(root, tmp_path):
    assert "outside ROOT" in safety(root).refusal(tmp_path / "outside" / "precious.bin")


def test_symlink_pointing_outside_is_refused(root, tmp_path):
    os.symlink(tmp_path / "outside", root / "run" / "escape")
    assert "symlink pointing outside ROOT" in safety(root).refusal("run/escape")


def test_path_through_a_symlinked_folder_outside_is_refused(root, tmp_path):
    os.symlink(tmp_path / "outside", root / "linked")
    assert "once symlinks are resolved" in safety(root).refusal("linked/precious.bin")


def test_symlink_inside_root_is_allowed(root):
    os.symlink(root / "run" / "checkpoint-10", root / "run" / "alias")
    assert safety(root).reasons("run/alias") == []


def test_trash_folder_is_refused(root):
    entry = Trash(root).move(root / "run" / "checkpoint-20")
    assert "trash" in safety(root).refusal(".ckpt-trash")
    assert "trash" in safety(root).refusal(f".ckpt-trash/{entry.id}/item")


def test_best_and_promoted_infos(root):
    infos = [
        info("run/checkpoint-10", best=True, run="run"),
        info("run/checkpoint-20", promoted=True, run="run"),
    ]
    s = safety(root, infos)
    assert "is the best checkpoint of run run" in s.refusal("run/checkpoint-10")
    assert "is the promoted checkpoint" in s.refusal("run/checkpoint-20")
    assert "contains the best checkpoint" in s.refusal("run")
    assert "is inside the best checkpoint" in s.refusal("run/checkpoint-10/model.safetensors")
    # slim keeps weights, so best/promoted may be slimmed
    assert s.reasons("run/checkpoint-10", action="slim") == []


def test_deepspeed_latest_target(tmp_path):
    root = tmp_path / "ds"
    for step in (10, 20):
        write_file(root / "out" / f"global_step{step}" / "mp_rank_00_model_states.pt")
    write_file(root / "out" / "latest", "global_step20\n")
    s = safety(root)
    assert "`latest`" in s.refusal("out/global_step20")
    assert "`latest`" in s.refusal("out/global_step20/mp_rank_00_model_states.pt")
    assert "`latest`" in s.refusal("out/global_step20", action="slim")
    assert s.reasons("out/global_step10") == []
    assert s.reasons("out") == []  # pointer and target go together


def test_lightning_last_ckpt(tmp_path):
    root = tmp_path / "pl"
    write_file(root / "ckpts" / "epoch=1-step=10.ckpt")
    write_file(root / "ckpts" / "epoch=2-step=20.ckpt")
    os.symlink("epoch=2-step=20.ckpt", root / "ckpts" / "last.ckpt")
    s = safety(root)
    assert "last.ckpt" in s.refusal("ckpts/last.ckpt")
    assert "last.ckpt names" in s.refusal("ckpts/epoch=2-step=20.ckpt")
    assert s.reasons("ckpts/epoch=1-step=10.ckpt") == []


def test_lightning_last_ckpt_copy_is_refused(tmp_path):
    root = tmp_path / "pl"
    write_file(root / "ckpts" / "last.ckpt")
    assert "resume point" in safety(root).refusal("ckpts/last.ckpt")


def test_best_model_checkpoint_relative_and_stale_absolute(root):
    write_file(
        root / "run" / "checkpoint-20" / "trainer_state.json",
        json.dumps({"best_model_checkpoint": "/gone/cluster/path/run/checkpoint-10"}),
    )
    s = safety(root)
    assert "best_model_checkpoint in run/checkpoint-20/trainer_state.json" in s.refusal("run/checkpoint-10")
    write_file(root / "fold" / "trainer_state.json", json.dumps({"best_model_checkpoint": "."}))
    assert "best_model_checkpoint" in safety(root).refusal("fold")


def test_promoted_manifest_protects_export_and_source_without_infos(root):
    export = root / "run" / "promoted" / "best"
    write_file(export / "model.safetensors")
    write_file(
        export / "ckpt_manifest.json",
        json.dumps(
            {"format": "ckpt-tui/manifest/1", "kind": "promoted", "source": "run/checkpoint-10", "files": {}}
        ),
    )
    s = safety(root)
    assert "promoted export" in s.refusal("run/promoted/best")
    assert "was promoted" in s.refusal("run/checkpoint-10")
    assert s.reasons("run/checkpoint-20") == []


def test_live_lock_in_run_folder(root):
    write_file(root / "run" / ".lock", json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert "held by pid" in safety(root).refusal("run/checkpoint-10")
    assert "held by pid" in safety(root).refusal("run")


def test_stale_lock_is_ignored(root):
    write_file(root / "run" / ".lock", json.dumps({"pid": 4_000_000, "host": socket.gethostname()}))
    assert safety(root, is_pid_alive=lambda pid: False).reasons("run/checkpoint-10") == []


def test_a_fresh_lock_of_another_host_is_respected_and_a_stale_one_is_not(root):
    """From another node the pid cannot be checked: the trainer's heartbeat in the lock tells."""
    clock = later_clock()
    lock = {"pid": 1, "host": "some-other-node", "heartbeat_s": 60}
    write_file(root / "run" / ".lock", json.dumps({**lock, "heartbeat": clock() - 90}))
    assert "held by pid 1 on some-other-node (heartbeat 90 s ago)" in safety(root, clock=clock).refusal(
        "run/checkpoint-10"
    )
    write_file(root / "run" / ".lock", json.dumps({**lock, "heartbeat": clock() - 3600}))
    assert safety(root, clock=clock).reasons("run/checkpoint-10") == []  # its node died an hour ago


def test_lock_inside_the_deleted_folder(root):
    write_file(root / "run" / "checkpoint-10" / ".lock", str(os.getpid()))
    assert "held by pid" in safety(root).refusal("run")


def test_recent_mtime_uses_the_injected_clock(root):
    from tests.fixtures.ops import age_tree

    age_tree(root)
    assert Safety(root).reasons("run/checkpoint-10") == []
    write_file(root / "run" / "checkpoint-10" / "new.bin")
    assert "modified 0 s ago" in Safety(root).refusal("run/checkpoint-10")
    assert safety(root).reasons("run/checkpoint-10") == []


def test_commit_temp_folder_recent_vs_leftover(root):
    make_checkpoint(root / "run" / ".checkpoint-30.tmp")
    recent = safety(root, clock=later_clock(120))
    assert "commit temp folder" in recent.refusal("run/.checkpoint-30.tmp")
    assert "commit temp folder" in recent.refusal("run/.checkpoint-30.tmp/optimizer.pt")
    assert safety(root, clock=later_clock(3600)).reasons("run/.checkpoint-30.tmp") == []


def test_run_lock_above_root_is_seen_but_stray_locks_are_not(tmp_path):
    run = tmp_path / "exp"
    write_file(run / "run.json", "{}")
    make_checkpoint(run / "checkpoints" / "step_1")
    alive = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    write_file(tmp_path / ".lock", alive)  # some other tool's lock above ROOT: not ours
    assert safety(run / "checkpoints").reasons("step_1") == []
    write_file(run / ".lock", alive)
    assert "held by pid" in safety(run / "checkpoints").refusal("step_1")


def test_best_listed_through_a_symlinked_folder_still_protects_the_real_folder(tmp_path):
    # The app deletes what the scan listed; an info whose path runs through a linked folder must protect
    # the folder that the delete would really move.
    root = tmp_path / "root"
    make_checkpoint(root / "zruns" / "exp" / "bert_fold_0")
    os.symlink(root / "zruns", root / "a_link")
    infos = [info("a_link/exp/bert_fold_0", kind="hf-model", best=True, run="a_link/exp")]
    s = safety(root, infos)
    assert "is the best checkpoint" in s.refusal("a_link/exp/bert_fold_0")
    assert "is the best checkpoint" in s.refusal("zruns/exp/bert_fold_0")
    assert "contains the best checkpoint" in s.refusal("zruns")


def test_best_fold_model_under_a_symlinked_run_folder_cannot_be_deleted(tmp_path):
    from tests.fixtures import synthetic
    from tui.core.actions import execute, plan_delete
    from tui.core.scan import scan

    root = tmp_path / "root"
    fold = root / "zruns" / "exp" / "bert_fold_0"
    synthetic.write_hf_model(fold)  # best only through its fold-model manifest: no pointer file names it
    synthetic.write_manifest(fold, kind="fold-model", step=8, fold=0)
    synthetic.write_json(root / "zruns" / "exp" / "run.json", {"format": "ckpt-tui/run/1"})
    os.symlink(root / "zruns", root / "a_link")
    infos = scan(root)
    assert [(i.path, i.best) for i in infos] == [("zruns/exp/bert_fold_0", True)]
    for given in ("a_link/exp/bert_fold_0", "zruns/exp/bert_fold_0"):
        plan = plan_delete(root, [given], infos, clock=later_clock())
        assert plan.items == [] and "best checkpoint" in plan.refusals[0].reason
        execute(plan)
    assert (fold / "model.safetensors").exists()


def test_a_checkpoints_own_stale_best_so_far_does_not_protect_it(tmp_path):
    # HF's first checkpoint always names itself best (the only eval so far); later states overrule it.
    root = tmp_path / "root"
    for step, best in ((10, 10), (20, 20), (30, 20)):
        make_checkpoint(root / "out" / f"checkpoint-{step}")
        write_file(
            root / "out" / f"checkpoint-{step}" / "trainer_state.json",
            json.dumps({"global_step": step, "best_model_checkpoint": f"out/checkpoint-{best}"}),
        )
    s = safety(root)
    assert s.reasons("out/checkpoint-10") == []
    assert "best_model_checkpoint in out/checkpoint-30/trainer_state.json" in s.refusal("out/checkpoint-20")
    assert s.reasons("out/checkpoint-30") == []
    # the newest checkpoint naming itself is the run's best: still protected
    write_file(
        root / "out" / "checkpoint-30" / "trainer_state.json",
        json.dumps({"global_step": 30, "best_model_checkpoint": "out/checkpoint-30"}),
    )
    assert "best_model_checkpoint in out/checkpoint-30" in safety(root).refusal("out/checkpoint-30")


def _copied_run(tmp_path):
    """A run trained in orig/, copied to root/: every trainer_state keeps orig's absolute paths, and orig
    still exists (its checkpoint-4 is outside ROOT)."""
    from tests.fixtures import synthetic

    orig = tmp_path / "orig" / "run"
    for n in (2, 4, 6):
        make_checkpoint(orig / f"checkpoint-{n}", optimizer=False)
        synthetic.write_trainer_state(
            orig / f"checkpoint-{n}",
            global_step=n,
            best_metric=0.9 if n >= 4 else 0.5,
            best_model_checkpoint=str(orig / ("checkpoint-4" if n >= 4 else "checkpoint-2")),
            evals={2: 0.5, 4: 0.9, 6: 0.7},
        )
    root = tmp_path / "root"
    root.mkdir()
    import shutil

    shutil.copytree(orig, root / "run")
    return root


def test_a_copied_runs_stale_absolute_best_protects_the_copys_own_checkpoint(tmp_path):
    from tests.fixtures.ops import age_tree
    from tui.core.actions import plan_delete, plan_prune
    from tui.core.scan import iter_checkpoints

    root = _copied_run(tmp_path)
    age_tree(tmp_path)
    infos = list(iter_checkpoints(root, errors=[]))
    assert [i.path for i in infos if i.best] == ["run/checkpoint-4"]
    assert "best_model_checkpoint" in safety(root).refusal("run/checkpoint-4")  # without the scan too
    assert plan_delete(root, ["run/checkpoint-4"], infos).items == []
    assert "run/checkpoint-4" not in [i.path for i in plan_prune(root, infos, 0, "f1_macro").items]


def test_a_best_path_outside_root_never_decides(tmp_path):
    from tui.core.summaries import resolve_best_checkpoint

    root = tmp_path / "root"
    make_checkpoint(root / "run" / "checkpoint-2")
    make_checkpoint(tmp_path / "elsewhere" / "checkpoint-9")
    write_file(root / "run" / "checkpoint-2" / "trainer_state.json",
               json.dumps({"best_model_checkpoint": str(tmp_path / "elsewhere" / "checkpoint-9")}))
    folder = root / "run" / "checkpoint-2"
    assert resolve_best_checkpoint(folder, str(tmp_path / "elsewhere" / "checkpoint-9"), root) is None
    assert resolve_best_checkpoint(folder, str(tmp_path / "elsewhere" / "checkpoint-9")) is None
    os.symlink(tmp_path / "elsewhere", root / "link")  # inside ROOT by name, outside once resolved
    assert resolve_best_checkpoint(folder, str(root / "link" / "checkpoint-9"), root) is None
    make_checkpoint(root / "other" / "best-here")  # a real folder inside ROOT by its absolute path counts
    assert resolve_best_checkpoint(folder, str(root / "other" / "best-here"), root) == root / "other" / "best-here"
    assert resolve_best_checkpoint(folder, "../../../elsewhere/checkpoint-9") is None  # relative escape
