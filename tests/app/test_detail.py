"""The detail pane: the Config tab shows the whole file under its summary; the Training plot puts losses
and metrics on their own axes, marks sparse points, picks series and smooths."""

from __future__ import annotations

from tests.fixtures import synthetic as syn
from tests.fixtures.pilot import age_tree, body_of, body_text, select, settle
from tui.app.app import make_app
from tui.app.widgets import training


async def test_config_tab_shows_the_summary_then_every_key_of_the_file(tmp_path):
    root = tmp_path / "tree"
    extra = {"intermediate_size": 37, "problem_type": "single_label_classification", "use_cache": False}
    syn.write_hf_model(root / "run" / "model", config={**extra, "rope_scaling": {"type": "linear", "factor": 2}})
    age_tree(root)
    app = make_app(root, poll_interval=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "run/model")
        text = body_text(app, "config")
        assert text.index("summary") < text.index("config file")
        whole = text[text.index("config file") :]
        for key in (*extra, "rope_scaling.factor", "model_type", "hidden_size"):
            assert key in whole, key
        assert "single_label_classification" in whole


def test_losses_go_left_metrics_right_and_sparse_points_are_marked():
    series = {
        "loss": ([float(s) for s in range(1, 30)], [1.0 / s for s in range(1, 30)]),
        "eval_f1_macro": ([10.0], [0.9]),  # one evaluation: still drawn, as a marked point
        "eval_loss": ([10.0, 20.0], [0.5, 0.4]),
    }
    drawn = {line.name: line for line in training.lines(series, "all", smooth=False)}
    assert not drawn["loss"].right and not drawn["eval_loss"].right and drawn["eval_f1_macro"].right
    assert drawn["eval_f1_macro"].points and drawn["eval_loss"].points and not drawn["loss"].points
    only_metrics = training.lines(series, "metrics", smooth=False)
    assert [line.name for line in only_metrics] == ["eval_f1_macro"] and not only_metrics[0].right
    assert training.views_of(series) == ["all", "losses", "metrics", "eval_f1_macro", "eval_loss", "loss"]
    smooth = {line.name: line for line in training.lines(series, "all", smooth=True)}
    assert smooth["loss"].ys == training.smoothed(series["loss"][1]) != series["loss"][1]
    assert smooth["eval_loss"].ys == [0.5, 0.4]  # sparse series are never smoothed
    assert training.smoothed([1.0, 0.0]) == [1.0, training.SMOOTHING]
    legend = training.legend(list(drawn.values()), "all", False).plain
    assert "eval_f1_macro (right)" in legend and "v: series (all)" in legend


def test_a_plot_with_one_evaluation_draws_it():
    from textual_plotext.plot import Plot

    plt = Plot()
    plt.plotsize(60, 15)
    training.draw(plt, training.lines({"eval_accuracy": ([5.0], [0.75])}, "all", smooth=False))
    assert "o" in plt.build()


async def test_series_and_smoothing_keys_change_what_the_plot_draws(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "hf_out/checkpoint-6")
        legend = app.query_one("#training-legend")
        assert "v: series (all)" in body_of(app, legend)
        await pilot.press("v")
        assert app.detail.active_tab == "training"
        assert "series (losses)" in body_of(app, legend)
        assert "eval_f1_macro" not in body_of(app, legend)
        await pilot.press("V")
        assert "smoothing on" in body_of(app, legend)
        await select(app, pilot, "broken/bad_model")  # no training log: the keys say so
        await pilot.press("v")
        assert not app.query_one("#training-plot").display


async def test_overview_says_which_process_layouts_a_step_checkpoint_resumes_on(tmp_path):
    import json

    from tui.core import commit

    root = tmp_path / "tree"
    for fold, names, state in (
        (0, ["random_states_0.pkl", "random_states_1.pkl", "pytorch_model/zero_pp_rank_0_mp_rank_00_optim_states.pt",
             "pytorch_model/zero_pp_rank_1_mp_rank_00_optim_states.pt", "pytorch_model/mp_rank_00_model_states.pt",
             "universal/zero/w/fp32.pt"], {"world_size": 2, "zero_stage": 2}),
        (1, ["model.safetensors", "optimizer.bin", "random_states_0.pkl"], {"world_size": 1, "zero_stage": None}),
    ):  # fmt: skip
        with commit.atomic_dir(
            root / "run" / "checkpoints" / f"fold_{fold}" / "step_8", kind="step-checkpoint"
        ) as tmp:
            for name in names:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes(b"x")
            (tmp / "train_state.json").write_text(json.dumps({"fold": fold, "global_step": 8, **state}))
    age_tree(root)
    app = make_app(root, poll_interval=0)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "run/checkpoints/fold_0/step_8")
        assert _line(body_text(app, "overview"), "resumes on") == "resumes on  2 processes / any"
        await select(app, pilot, "run/checkpoints/fold_1/step_8")
        expected = "resumes on  1 process without DeepSpeed / any count under ZeRO"
        assert _line(body_text(app, "overview"), "resumes on") == expected


def _line(text: str, start: str) -> str | None:
    """The line of a rendered tab that starts with ``start``, without colours and trailing spaces."""
    import re

    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip() for line in text.splitlines()]
    return next((line for line in lines if line.startswith(start)), None)


def test_resumes_on_names_the_layouts():
    from tui.core.resume_layout import resumes_on

    three = "2 processes / any count under ZeRO-3 or without DeepSpeed"
    assert resumes_on({"world_size": 2, "zero_stage": 3, "universal": False}) == three
    assert resumes_on({"world_size": 4, "zero_stage": 2, "universal": True}) == "4 processes / any"
    plain = "1 process without DeepSpeed / any count under ZeRO"
    assert resumes_on({"world_size": 1, "zero_stage": None, "universal": False}) == plain
    assert resumes_on(None) is None and resumes_on({"world_size": "2"}) is None
