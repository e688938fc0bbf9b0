import pytest

from tests.fixtures.ops import info, later_clock, make_checkpoint, tree_hashes
from tui.core.actions import execute, plan_prune, undo_last
from tui.core.model import Metric
from tui.core.text import lower_is_better

CLOCK = later_clock()


def build(root, specs):
    """specs: (path, step, value, extra) -> infos; each path becomes a small checkpoint on disk."""
    infos = []
    for path, step, value, extra in specs:
        make_checkpoint(root / path)
        metric = None if value is None else Metric("eval_f1_macro", value)
        infos.append(info(path, step=step, metric=metric, **extra))
    return infos


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    specs = [
        ("runA/checkpoints/fold_0/step_10", 10, 0.50, {"run": "runA", "fold": 0}),
        ("runA/checkpoints/fold_0/step_20", 20, 0.90, {"run": "runA", "fold": 0}),
        ("runA/checkpoints/fold_0/step_30", 30, 0.70, {"run": "runA", "fold": 0}),
        ("runA/checkpoints/fold_0/step_40", 40, 0.60, {"run": "runA", "fold": 0}),
        ("runA/checkpoints/fold_1/step_10", 10, 0.80, {"run": "runA", "fold": 1}),
        ("runA/checkpoints/fold_1/step_20", 20, 0.85, {"run": "runA", "fold": 1}),
        ("runA/checkpoints/fold_1/step_30", 30, 0.10, {"run": "runA", "fold": 1, "best": True}),
        ("runA/checkpoints/fold_1/step_40", 40, 0.20, {"run": "runA", "fold": 1}),
        ("hf_out/checkpoint-100", 100, 0.3, {}),
        ("hf_out/checkpoint-200", 200, None, {}),
        ("hf_out/checkpoint-300", 300, 0.2, {}),
    ]
    return root, build(root, specs)


def test_keeps_top_k_and_latest_per_run_and_fold(tree):
    root, infos = tree
    plan = plan_prune(root, infos, keep=1, metric="f1_macro", clock=CLOCK)
    assert [i.path for i in plan.items] == [
        "runA/checkpoints/fold_0/step_10",
        "runA/checkpoints/fold_0/step_30",
        "runA/checkpoints/fold_1/step_10",
    ]
    kept = {k.path: k.reason for k in plan.kept}
    assert kept["runA/checkpoints/fold_0/step_20"] == "top 1 by f1_macro (#1)"
    assert kept["runA/checkpoints/fold_0/step_40"] == "latest of its run"
    assert kept["runA/checkpoints/fold_1/step_20"] == "top 1 by f1_macro (#1)"
    assert "best checkpoint" in kept["runA/checkpoints/fold_1/step_30"]
    assert kept["hf_out/checkpoint-100"].startswith("top 1")
    assert "no f1_macro value" in kept["hf_out/checkpoint-200"]
    assert kept["hf_out/checkpoint-300"] == "latest of its run"
    assert plan.total_bytes == sum(i.bytes for i in plan.items) > 0
    assert plan.summary.startswith("Prune 3 items")


def test_dry_run_plan_equals_what_the_real_prune_removes(tree):
    root, infos = tree
    before = set(tree_hashes(root))
    plan = plan_prune(root, infos, keep=2, metric="eval_f1_macro", clock=CLOCK)
    result = execute(plan)
    assert result.ok
    after = set(tree_hashes(root))
    removed_dirs = {p.rsplit("/", 1)[0] for p in before - after if not p.startswith(".ckpt-trash")}
    assert removed_dirs == {i.path for i in plan.items}
    assert [i.path for i in result.done] == [i.path for i in plan.items]
    undo_last(root)
    assert {p for p in tree_hashes(root) if not p.startswith(".ckpt-trash")} == before


def test_keep_zero_keeps_only_latest_and_protected(tree):
    root, infos = tree
    plan = plan_prune(root, infos, keep=0, metric="f1_macro", clock=CLOCK)
    kept = {k.path for k in plan.kept}
    assert "runA/checkpoints/fold_0/step_40" in kept and "runA/checkpoints/fold_1/step_30" in kept
    assert len(plan.items) == 11 - len(kept)


def test_loss_metrics_rank_lowest_first(tmp_path):
    root = tmp_path / "root"
    infos = []
    for step, loss in [(1, 0.9), (2, 0.1), (3, 0.5), (4, 0.7)]:
        make_checkpoint(root / f"out/checkpoint-{step}")
        infos.append(info(f"out/checkpoint-{step}", step=step, metric=Metric("eval_loss", loss)))
    plan = plan_prune(root, infos, keep=1, metric="eval_loss", clock=CLOCK)
    assert [i.path for i in plan.items] == ["out/checkpoint-1", "out/checkpoint-3"]
    flipped = plan_prune(root, infos, keep=1, metric="eval_loss", mode="max", clock=CLOCK)
    assert [i.path for i in flipped.items] == ["out/checkpoint-2", "out/checkpoint-3"]
    assert lower_is_better("log_loss") and not lower_is_better("accuracy")


def test_adapters_go_with_their_folder(tmp_path):
    root = tmp_path / "root"
    make_checkpoint(root / "out/a")
    make_checkpoint(root / "out/b")
    make_checkpoint(root / "out/c")
    m = Metric("acc", 0.5)
    infos = [
        info("out/a", step=1, metric=m),
        info("out/a/adapter", kind="peft-adapter", step=1, metric=m),
        info("out/b", step=2, metric=Metric("acc", 0.9)),
        info("out/c", step=3, metric=m),
    ]
    plan = plan_prune(root, infos, keep=1, metric="acc", clock=CLOCK)
    assert [i.path for i in plan.items] == ["out/a"]


def test_no_metric_anywhere_deletes_nothing(tree):
    root, infos = tree
    plan = plan_prune(root, infos, keep=1, metric="accuracy", clock=CLOCK)
    assert plan.items == [] and "nothing is ranked" in plan.summary


def test_bad_arguments(tree):
    root, infos = tree
    with pytest.raises(ValueError, match="--keep"):
        plan_prune(root, infos, keep=-1, metric="f1_macro")
    with pytest.raises(ValueError, match="mode"):
        plan_prune(root, infos, keep=1, metric="f1_macro", mode="up")


def _trainer_output(out, evals):
    """HF Trainer's output_dir after training and save_model: checkpoint-N folders inside an hf-model."""
    from tests.fixtures import synthetic

    for step in evals:
        so_far = {s: v for s, v in evals.items() if s <= step}
        best = max(so_far, key=so_far.get)
        synthetic.write_hf_checkpoint(
            out / f"checkpoint-{step}",
            step,
            evals=so_far,
            best_metric=so_far[best],
            best_model_checkpoint=str(out / f"checkpoint-{best}"),
        )
    synthetic.write_hf_model(out, tokenizer=False)
    best = max(evals, key=evals.get)
    synthetic.write_trainer_state(
        out,
        global_step=max(evals),
        evals=evals,
        best_metric=evals[best],
        best_model_checkpoint=str(out / f"checkpoint-{best}"),
    )


def test_checkpoints_inside_a_trainer_output_dir_are_pruned_and_the_dir_is_kept(tmp_path):
    from tests.fixtures.ops import age_tree
    from tui.core.scan import scan

    root = tmp_path / "root"
    _trainer_output(root / "hf_out", {10: 0.55, 20: 0.9, 30: 0.6, 40: 0.7})
    _trainer_output(root / "hf_out2", {10: 0.8, 20: 0.3})  # a second run beside it: never merged
    age_tree(root)
    before = tree_hashes(root)
    infos = scan(root)
    assert {i.path: i.kind for i in infos}["hf_out"] == "hf-model"
    plan = plan_prune(root, infos, keep=1, metric="f1_macro", clock=CLOCK)
    assert [i.path for i in plan.items] == ["hf_out/checkpoint-10", "hf_out/checkpoint-30"]
    kept = {k.path: k.reason for k in plan.kept}
    assert kept["hf_out"].startswith("holds other checkpoints") and kept["hf_out2"].startswith("holds")
    assert (
        kept["hf_out/checkpoint-20"].startswith("top 1")
        and kept["hf_out/checkpoint-40"] == "latest of its run"
    )
    assert (
        kept["hf_out2/checkpoint-10"].startswith("top 1")
        and kept["hf_out2/checkpoint-20"] == "latest of its run"
    )
    assert execute(plan).ok
    assert sorted(p.name for p in (root / "hf_out").iterdir() if p.name.startswith("checkpoint")) == [
        "checkpoint-20",
        "checkpoint-40",
    ]
    assert (root / "hf_out" / "model.safetensors").exists()
    undo_last(root)
    assert {k: v for k, v in tree_hashes(root).items() if not k.startswith(".ckpt-trash")} == before


def test_undo_of_a_prune_restores_every_byte(tree):
    root, infos = tree
    before = tree_hashes(root)
    result = execute(plan_prune(root, infos, keep=0, metric="f1_macro", clock=CLOCK))
    assert result.ok and len(result.done) >= 5
    undone = undo_last(root)
    assert undone.ok and len(undone.done) == len(result.done)
    assert {k: v for k, v in tree_hashes(root).items() if not k.startswith(".ckpt-trash")} == before
