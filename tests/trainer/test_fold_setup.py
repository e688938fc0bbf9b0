"""The K-fold loop under a real 1-process ZeRO-3 launch: the table is tokenized once for all folds, a
fold's model is gone before the next fold builds its own (ZeRO-3 keeps every model alive otherwise, and
the engine's reference cycles outlive the fold until a collection), and run.json gets the fold's figures.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from tests.subprocess_env import cpu_only
from trainer.demo import demo_dataframe

REPO = Path(__file__).resolve().parents[2]
ROWS = 60


def _train_args(tmp_path: Path) -> list[str]:
    data = tmp_path / "train.csv"
    demo_dataframe(num_rows=ROWS).to_csv(data, index=False)
    return [
        "--data.path", str(data), "--data.id_column", "id", "--run.output_dir", str(tmp_path / "out"),
        "--folds.num_folds", "2", "--train.epochs", "1", "--train.batch_size", "16",
        "--train.save_every", "2", "--train.warmup_steps", "1",
    ]  # fmt: skip


@pytest.mark.slow
def test_tokenized_once_and_each_fold_released_before_the_next(tmp_path):
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
              "--dynamo_backend", "no", "--use_deepspeed", "--zero_stage", "3", "--mixed_precision", "no",
              "--zero3_save_16bit_model", "true"]  # fmt: skip
    probe = tmp_path / "probe.json"
    env = {**cpu_only(), "PYTHONPATH": str(REPO), "ACCELERATE_CONFIG_FILE": str(tmp_path / "none.yaml")}
    proc = subprocess.run(
        launch + [__file__, str(probe), *_train_args(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    seen = json.loads(probe.read_text())
    assert seen["tokenized_rows"] == [ROWS]  # every row once, for both folds
    assert seen["alive_at_next_load"] == [False]  # fold 0's model was freed before fold 1 loaded its own
    assert seen["alive_at_end"] == [False, False]

    record = json.loads((tmp_path / "out" / "kfold" / "run.json").read_text())
    assert set(record["fold_stats"]) == {"0", "1"}
    for fold in record["fold_stats"].values():
        # 30 training rows per fold, batch 16: 2 optimizer steps, 30 samples
        assert fold["optimizer_steps"] == 2 and fold["train_samples"] == 30 and fold["skipped_steps"] == 0
        assert fold["train_tokens"] >= 30 * 8 and fold["train_seconds"] > 0
        assert fold["peak_gpu_memory_bytes"] is None  # no GPU here


def _probe(out: Path, argv: list[str]) -> None:
    """Train with the loop's model loader and tokenizer watched; automatic collection off, so only the
    loop's own release can free a fold."""
    import trainer.loop as loop
    from trainer.config import parse_args
    from trainer.plan import make_plan

    tokenized_rows: list[int] = []
    models: list[weakref.ref] = []
    alive_at_next_load: list[bool] = []
    real_load_tokenizer, real_load_model = loop.load_tokenizer, loop.load_model

    def counting_tokenizer(path):
        tok = real_load_tokenizer(path)
        real_call = type(tok).__call__

        def call(self, text, *args, **kwargs):
            tokenized_rows.append(len(text) if isinstance(text, list) else 1)
            return real_call(self, text, *args, **kwargs)

        type(tok).__call__ = call
        return tok

    def tracked_model(*args, **kwargs):
        alive_at_next_load.extend(ref() is not None for ref in models)
        model = real_load_model(*args, **kwargs)
        models.append(weakref.ref(model))
        return model

    loop.load_tokenizer, loop.load_model = counting_tokenizer, tracked_model
    cfg = parse_args(argv)
    plan = make_plan(cfg)
    gc.disable()
    loop.train(cfg, plan)
    out.write_text(json.dumps({
        "tokenized_rows": tokenized_rows, "alive_at_next_load": alive_at_next_load,
        "alive_at_end": [ref() is not None for ref in models],
    }))  # fmt: skip


if __name__ == "__main__":
    _probe(Path(sys.argv[1]), sys.argv[2:])
