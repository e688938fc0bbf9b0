"""Pilot tests of the trash screen, the prune screen, multi-select delete, promote with an injected
converter (ZeRO, LoRA with a chosen base) and the keymap. Each asserts what the app shows and what is on
disk afterwards."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Select

from tests.fixtures import synthetic as syn
from tests.fixtures.pilot import age_tree, digest_tree, record_notices, screen_text, select, settle
from tui.app import messages as msg
from tui.app.app import make_app
from tui.core import actions


def trash_ids(root: Path) -> list[str]:
    return sorted(p.parent.name for p in (root / ".ckpt-trash").glob("*/entry.json"))


# --- trash screen ----------------------------------------------------------------------------------


async def test_trash_screen_lists_cli_and_app_entries_and_restores_the_chosen_one(tree):
    cli_target = tree / "hf_out" / "checkpoint-2"
    before = digest_tree(cli_target)
    assert actions.execute(actions.plan_delete(tree, ["hf_out/checkpoint-2"]), origin="cli").ok
    app = make_app(tree, poll_interval=0)
    notices = record_notices(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "run1/checkpoints/fold_0/step_4")
        await pilot.press("d", "y")
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        screen = app.screen
        assert type(screen).__name__ == "TrashScreen"
        text = screen_text(app)
        assert "hf_out/checkpoint-2" in text and "run1/checkpoints/fold_0/step_4" in text
        table = screen.query_one(DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        # newest first: the app's delete, then the CLI's
        assert [(r[1], r[3], r[4]) for r in rows] == [
            ("run1/checkpoints/fold_0/step_4", "delete", "app"),
            ("hf_out/checkpoint-2", "delete", "cli"),
        ]
        table.move_cursor(row=1)
        await pilot.press("enter")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ConfirmModal"
        await pilot.press("y")
        await settle(app, pilot)
        assert digest_tree(cli_target) == before
        assert not (tree / "run1/checkpoints/fold_0/step_4").exists()  # only the chosen entry came back
        assert "Restored hf_out/checkpoint-2" in notices[-1][1]
        assert app.screen is screen and screen.query_one(DataTable).row_count == 1
        assert "hf_out/checkpoint-2" in app.store.infos


async def test_trash_screen_empties_one_entry_for_good_after_confirming(tree):
    for path in ("hf_out/checkpoint-2", "run1/checkpoints/fold_0/step_4"):
        assert actions.execute(actions.plan_delete(tree, [path]), origin="cli").ok
    (older, newer) = trash_ids(tree)
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        await pilot.press("x")  # the cursor starts on the newest entry
        await settle(app, pilot)
        modal = app.screen
        assert type(modal).__name__ == "ConfirmModal" and "cannot be undone" in modal.summary
        assert [item[0] for item in modal.items] == [newer]
        await pilot.press("n")
        await settle(app, pilot)
        assert trash_ids(tree) == [older, newer]  # cancelled: nothing removed
        await pilot.press("x", "y")
        await settle(app, pilot)
        assert trash_ids(tree) == [older]
        assert app.screen.query_one(DataTable).row_count == 1


# --- prune screen ----------------------------------------------------------------------------------


def sweep(tree: Path) -> None:
    """HF checkpoints 2..8, each with its own evaluation; the best (checkpoint-1) was rotated away, so
    none is protected."""
    values = {1: 0.95, 2: 0.5, 4: 0.9, 6: 0.7, 8: 0.6}
    for step in (2, 4, 6, 8):
        syn.write_hf_checkpoint(
            tree / "sweep" / f"checkpoint-{step}",
            step,
            evals={s: v for s, v in values.items() if s <= step},
            best_metric=0.95,
            best_model_checkpoint="/old/sweep/checkpoint-1",
        )
    age_tree(tree)


def goes(screen) -> set[str]:
    return {i.path.removeprefix("sweep/") for i in screen.plan.items}


async def test_prune_screen_previews_k_metric_mode_and_executes_that_plan(tree):
    sweep(tree)
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "sweep/checkpoint-2")
        await pilot.press("p")
        await settle(app, pilot)
        screen = app.screen
        assert type(screen).__name__ == "PruneScreen"
        assert screen.query_one("#prune-metric", Select).value == "f1_macro"
        assert goes(screen) == {"checkpoint-2"}  # K 2 by the higher f1: 4, 6 stay, and 8 (latest)
        keep = screen.query_one("#prune-keep", Input)
        keep.value = "0"
        await settle(app, pilot)
        assert goes(screen) == {"checkpoint-2", "checkpoint-4", "checkpoint-6"}
        text = screen_text(app)
        assert "goes: 3" in text and "latest of its run" in text and "sweep/checkpoint-4" in text
        keep.value = "1"
        screen.query_one("#prune-mode", Select).value = "min"  # lower is better: 0.5 ranks first
        await settle(app, pilot)
        assert goes(screen) == {"checkpoint-4", "checkpoint-6"}
        freed = sum(f.stat().st_size for n in goes(screen) for f in (tree / "sweep" / n).iterdir())
        assert screen.plan.total_bytes == freed
        assert "lower f1_macro is better" in screen_text(app)
        await pilot.press("enter")
        await settle(app, pilot)
        modal = app.screen
        assert type(modal).__name__ == "ConfirmModal"
        assert [i[0] for i in modal.items] == ["sweep/checkpoint-4", "sweep/checkpoint-6"]
        await pilot.press("y")
        await settle(app, pilot)
    assert sorted(p.name for p in (tree / "sweep").iterdir()) == ["checkpoint-2", "checkpoint-8"]


async def test_prune_screen_cancel_changes_nothing(tree):
    before = digest_tree(tree / "hf_out")
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "hf_out/checkpoint-2")
        await pilot.press("p")
        await settle(app, pilot)
        await pilot.press("escape")
        await settle(app, pilot)
        assert type(app.screen).__name__ != "PruneScreen"
    assert digest_tree(tree / "hf_out") == before


# --- marks ----------------------------------------------------------------------------------------


async def test_marked_checkpoints_are_deleted_as_one_plan_and_undone_together(tree):
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        marked = ["hf_out/checkpoint-2", "run1/checkpoints/fold_0/step_4", "run1/checkpoints/fold_1/step_4"]
        for path, key in zip(marked, ("space", "m", "space"), strict=True):
            await select(app, pilot, path)
            await pilot.press(key)
        assert app.store.marked == marked and "marked: 3" in screen_text(app)
        await select(app, pilot, "hf_out/checkpoint-6")  # the cursor elsewhere: the marks are what goes
        await pilot.press("d")
        await settle(app, pilot)
        modal = app.screen
        assert sorted(i[0] for i in modal.items) == sorted(marked)
        await pilot.press("y")
        await settle(app, pilot)
        assert not any((tree / p).exists() for p in marked) and (tree / "hf_out" / "checkpoint-6").is_dir()
        assert app.store.marked == []
        entries = [json.loads(p.read_text()) for p in (tree / ".ckpt-trash").glob("*/entry.json")]
        assert len({e["batch"] for e in entries}) == 1 and len(entries) == 3
        await pilot.press("u")
        await settle(app, pilot)
        assert all((tree / p).is_dir() for p in marked)


async def test_unmark_all_and_diff_needs_exactly_two(tree):
    app = make_app(tree, poll_interval=0)
    notices = record_notices(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        for path in ("hf_out/checkpoint-2", "hf_out/checkpoint-4", "hf_out/checkpoint-6"):
            await select(app, pilot, path)
            await pilot.press("m")
        await pilot.press("D")
        await settle(app, pilot)
        assert "exactly two" in notices[-1][1] and "3 marked" in notices[-1][1]
        await pilot.press("M")
        assert app.store.marked == []


# --- promote with the converter the CLI injects --------------------------------------------------


class FakeConvert:
    """Stands in for tui.convert (torch): writes a weights file and records what it was asked."""

    class ConvertError(Exception):
        pass

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def _weights(self, out: Path) -> None:
        syn.write_safetensors(out / "model.safetensors", syn.tiny_bert_tensors())

    def consolidate_zero(self, checkpoint_dir, tag, config_path, out) -> None:
        self.calls.append(("zero", {"dir": Path(checkpoint_dir).name, "tag": tag}))
        self._weights(out)

    def merge_lora(self, adapter_dir, out, *, root, config=None, base=None) -> None:
        self.calls.append(("lora", {"base": base}))
        if base is None:
            raise self.ConvertError(f"{adapter_dir}/adapter_config.json: base model 'hub/x' is not a local folder")
        self._weights(out)

    def verify_reload(self, folder) -> None:
        self.calls.append(("verify", {}))


def record_progress(app) -> list[str]:
    stages: list[str] = []
    post = app.post_message

    def post_message(message):
        if isinstance(message, msg.PromoteProgress):
            stages.append(message.stage)
        return post(message)

    app.post_message = post_message
    return stages


async def test_promote_zero_in_the_app_runs_the_injected_converter_with_progress(tree):
    syn.write_config(tree / "dsrun")
    syn.write_deepspeed(tree / "dsrun" / "ds", 10)
    age_tree(tree)
    fake = FakeConvert()
    app = make_app(tree, poll_interval=0, convert_loader=lambda: fake)
    notices = record_notices(app)
    stages = record_progress(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "dsrun/ds/global_step10")
        await pilot.press("P")
        await settle(app, pilot)
        assert "ZeRO shards are consolidated" in screen_text(app)
        await pilot.press("enter")
        await settle(app, pilot)
        assert notices[-1][0] == "information", notices[-1]
        assert "zero conversion" in notices[-1][1]
        assert stages == ["copying files", "consolidating the ZeRO shards", "reloading the export to check it"]
        assert app.promoting == {} and "promoting" not in screen_text(app)
    (out,) = [p for p in tree.rglob("promoted/*") if "global_step10" in p.name]
    manifest = json.loads((out / "ckpt_manifest.json").read_text())
    assert manifest["kind"] == "promoted" and {"model.safetensors", "config.json"} <= set(manifest["files"])
    assert fake.calls[0] == ("zero", {"dir": "ds", "tag": "global_step10"})


async def test_the_status_line_shows_the_step_a_running_promote_is_in(tree):
    syn.write_config(tree / "dsrun")
    syn.write_deepspeed(tree / "dsrun" / "ds", 10)
    age_tree(tree)
    release = threading.Event()

    class SlowConvert(FakeConvert):
        def consolidate_zero(self, *args) -> None:
            assert release.wait(20)
            super().consolidate_zero(*args)

    app = make_app(tree, poll_interval=0, convert_loader=SlowConvert)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "dsrun/ds/global_step10")
        await pilot.press("P", "enter")
        want = "promoting dsrun/ds/global_step10: consolidating the ZeRO shards"
        for _ in range(100):
            await pilot.pause(0.05)
            if want in screen_text(app):
                break
        assert want in screen_text(app)
        release.set()
        await settle(app, pilot)
        assert "promoting" not in screen_text(app)


async def test_promote_lora_asks_for_a_base_and_passes_it_relative_to_root(tree):
    syn.write_peft_adapter(tree / "lorarun" / "adapter", base_model="hub/x")
    syn.write_config(tree / "lorarun" / "adapter")
    syn.write_config(tree / "bases" / "tiny")
    age_tree(tree)
    fake = FakeConvert()
    app = make_app(tree, poll_interval=0, convert_loader=lambda: fake)
    notices = record_notices(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "lorarun/adapter")
        await pilot.press("P", "enter")  # no base given: the adapter's hub id is not on disk
        await settle(app, pilot)
        assert notices[-1][0] == "error" and "not a local folder" in notices[-1][1]
        assert not list(tree.rglob("promoted/adapter"))
        await pilot.press("P")
        await settle(app, pilot)
        base_box = app.screen.query_one("#promote-base", Input)
        base_box.focus()
        await pilot.press(*"bases/tiny", "enter")
        await settle(app, pilot)
        assert notices[-1][0] == "information", notices[-1]
    assert fake.calls[-2] == ("lora", {"base": tree / "bases" / "tiny"})
    assert (tree / "lorarun" / "promoted" / "adapter" / "model.safetensors").is_file()


@pytest.mark.slow
async def test_promote_merges_a_real_lora_adapter_into_the_chosen_base(tree):
    """The converter the console script injects (tui.convert, torch and peft), end to end: the adapter
    names a hub id that is not on disk; the base is given in the promote screen."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

    from tests.fixtures.real import tiny_bert_config
    from tui.cli.app_cmd import load_converter

    torch.manual_seed(0)
    base = BertForSequenceClassification(tiny_bert_config())
    base.save_pretrained(str(tree / "bases" / "tiny"))
    peft_model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_()  # a trained adapter: merging changes the weights
    peft_model.save_pretrained(str(tree / "lorarun" / "adapter"))
    cfg_file = tree / "lorarun" / "adapter" / "adapter_config.json"
    cfg_file.write_text(json.dumps(dict(json.loads(cfg_file.read_text()), base_model_name_or_path="hub/x")))
    age_tree(tree)
    app = make_app(tree, poll_interval=0, convert_loader=load_converter)
    notices = record_notices(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "lorarun/adapter")
        await pilot.press("P")
        await settle(app, pilot)
        app.screen.query_one("#promote-base", Input).focus()
        await pilot.press(*"bases/tiny", "enter")
        await settle(app, pilot)
        assert notices[-1][0] == "information" and "lora conversion" in notices[-1][1], notices[-1]
        assert "checked by reloading it" in notices[-1][1]
    merged = AutoModelForSequenceClassification.from_pretrained(
        str(tree / "lorarun" / "promoted" / "adapter"), local_files_only=True
    ).eval()
    ids = torch.randint(0, 100, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, peft_model.eval()(input_ids=ids).logits)


async def test_without_a_converter_a_zero_promote_names_the_cli_command(tree):
    syn.write_config(tree / "dsrun")
    syn.write_deepspeed(tree / "dsrun" / "ds", 10)
    age_tree(tree)
    app = make_app(tree, poll_interval=0)
    notices = record_notices(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await select(app, pilot, "dsrun/ds/global_step10")
        await pilot.press("P", "enter")
        await settle(app, pilot)
    assert notices[-1][0] == "error" and "ckpt-tui promote" in notices[-1][1]


# --- keymap ---------------------------------------------------------------------------------------


async def test_keymap_toml_remaps_a_binding_by_id(tree, tmp_path, monkeypatch):
    config = tmp_path / "xdg"
    (config / "ckpt-tui").mkdir(parents=True)
    (config / "ckpt-tui" / "keymap.toml").write_text(
        '"app.delete" = "x"\n"trash.empty_one" = "delete"\n"app.delet" = "y"\n[app]\ntrash = "T"\n'
    )
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    app = make_app(tree, poll_interval=0)
    notices = record_notices(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert notices[0][0] == "warning" and "no binding has the id 'app.delet'" in notices[0][1]
        await select(app, pilot, "hf_out/checkpoint-2")
        await pilot.press("d")
        await settle(app, pilot)
        assert app.screen is app.screen_stack[0] and len(app.screen_stack) == 1  # d no longer deletes
        await pilot.press("x")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ConfirmModal"
        await pilot.press("y", "T")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "TrashScreen"
        await pilot.press("x")  # the trash screen's x is remapped to delete: nothing happens
        await settle(app, pilot)
        assert type(app.screen).__name__ == "TrashScreen"
        await pilot.press("delete")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ConfirmModal" and "cannot be undone" in app.screen.summary
        await pilot.press("n", "escape", "question_mark")
        await settle(app, pilot)
        help_rows = [line for line in screen_text(app).splitlines() if "app.delete" in line]
        assert help_rows and help_rows[0].split()[1] == "x", help_rows
    assert not (tree / "hf_out" / "checkpoint-2").exists() and len(trash_ids(tree)) == 1


async def test_a_bad_keymap_is_named_and_ignored(tree, tmp_path, monkeypatch):
    (tmp_path / "ckpt-tui").mkdir()
    (tmp_path / "ckpt-tui" / "keymap.toml").write_text('"app.delete" = 3\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    app = make_app(tree, poll_interval=0)
    notices = record_notices(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert notices and notices[0][0] == "warning"
        assert "keymap.toml: app.delete must be a string" in notices[0][1]
        await select(app, pilot, "hf_out/checkpoint-2")
        await pilot.press("d")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ConfirmModal"  # the defaults stay


# --- diff ------------------------------------------------------------------------------------------


async def test_diff_screen_shows_every_differing_config_key_nested_and_skips_noise(tree):
    base = {"intermediate_size": 32, "problem_type": "single_label_classification", "use_cache": True}
    syn.write_hf_model(tree / "cmp" / "a", config={**base, "rope_scaling": {"type": "linear", "factor": 2.0}})
    syn.write_hf_model(
        tree / "cmp" / "b",
        config={
            "intermediate_size": 64,
            "problem_type": "multi_label_classification",
            "use_cache": False,
            "rope_scaling": {"type": "linear", "factor": 4.0},
            "transformers_version": "9.9.9",  # noise: never a difference
        },
    )
    age_tree(tree)
    app = make_app(tree, poll_interval=0)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        for path in ("cmp/a", "cmp/b"):
            await select(app, pilot, path)
            await pilot.press("m")
        await pilot.press("D")
        await settle(app, pilot)
        screen = app.screen
        assert type(screen).__name__ == "DiffScreen"
        keys = {row[0] for row in screen.config_diff}
        assert {"intermediate_size", "problem_type", "use_cache", "rope_scaling.factor"} <= keys
        assert "transformers_version" not in keys and "rope_scaling.type" not in keys
        table = screen.query_one("#diff-config-table", DataTable)
        shown = {str(table.get_row_at(i)[0]) for i in range(table.row_count)}
        assert shown == keys
        assert "Config (4)" in screen_text(app)
