"""Pilot tests of MindSpore checkpoints in the app: run groups by prefix, steps, the Weights tab, the group's
note, a truncated best model, and promote (which needs no torch for MindSpore)."""

from __future__ import annotations

import json

import numpy as np
from safetensors.numpy import load_file

from tests.fixtures.mindspore_files import network, write_50_epoch_dir
from tests.fixtures.pilot import age_tree, body_text, record_notices, select, settle, visible_paths
from tui.app.app import make_app


def fifty(tmp_path):
    root = tmp_path / "tree"
    paths = write_50_epoch_dir(root)
    age_tree(root)
    return root, paths


async def test_mindspore_runs_steps_weights_and_notes(tmp_path):
    root, _ = fifty(tmp_path)
    app = make_app(root, poll_interval=0)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        assert len(visible_paths(app)) == 12
        keys = [row.key.value for row in app.browser.ordered_rows]
        fer = [k for k in keys if k.startswith("checkpoints_50epoch/fer-")]
        assert fer == [f"checkpoints_50epoch/fer-{e}_449.ckpt" for e in range(46, 51)]
        groups = {k for k in keys if k.startswith("group:")}
        assert {"group:checkpoints_50epoch/fer-*", "group:checkpoints_50epoch/fer_1-*"} <= groups
        assert app.browser.get_cell("checkpoints_50epoch/fer-46_449.ckpt", "kind").plain == "mindspore"
        assert app.browser.get_cell("checkpoints_50epoch/fer-46_449.ckpt", "name").label == "fer-46_449.ckpt"
        assert app.browser.get_cell("checkpoints_50epoch/fer-46_449.ckpt", "step").plain == str(46 * 449)
        cut = "checkpoints_50epoch_copy/best_model.ckpt"
        assert app.browser.get_cell(cut, "status").plain.endswith("broken")
        assert app.browser.get_cell("checkpoints_50epoch/best_model.ckpt", "status").plain.endswith("best")

        await select(app, pilot, "checkpoints_50epoch/fer-50_449.ckpt")
        weights = body_text(app, "weights")
        assert "network tensors" in weights and "16 tensors" in weights and "fc1.weight" in weights
        overview = body_text(app, "overview")
        assert "step in epoch" in overview and "449" in overview

        await select(app, pilot, "checkpoints_50epoch/final_model.ckpt")
        assert "mindspore (final model)" in body_text(app, "overview")

        app.browser.move_cursor(row=app.browser.get_row_index("group:checkpoints_50epoch/fer-*"))
        await settle(app, pilot)
        assert "only epochs 46-50 remain" in " ".join(body_text(app, "overview").split())
        app.browser.move_cursor(row=app.browser.get_row_index("group:checkpoints_50epoch/fer_1-*"))
        await settle(app, pilot)
        assert "a later run than fer-*" in " ".join(body_text(app, "overview").split())


async def test_promote_a_mindspore_checkpoint_in_the_app(tmp_path):
    root, _ = fifty(tmp_path)
    app = make_app(root, poll_interval=0)
    notices = record_notices(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "checkpoints_50epoch/fer-48_449.ckpt")
        await pilot.press("P")
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        assert notices[-1][0] == "information", notices[-1]
        out = root / "checkpoints_50epoch" / "promoted" / "fer-48_449"
        assert json.loads((out / "ckpt_manifest.json").read_text())["kind"] == "promoted"
        exported = load_file(str(out / "model.safetensors"))
        for name, array in network(48).items():
            np.testing.assert_array_equal(exported[name], array)
        assert app.store.infos["checkpoints_50epoch/promoted/fer-48_449"].promoted
