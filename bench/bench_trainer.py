"""The whole K-fold job as a user runs it: our command vs an HF ``Trainer`` script doing the same job.

    python bench/bench_trainer.py [--rows 2400 --folds 5 --epochs 3 --batch-size 32 --skip-zero2]

Contenders, each a fresh process tree started from the shell the way a user starts it, one after the other,
timed from launch to exit (imports, tokenisation, every fold, evaluation, checkpoints, OOF metrics):

- ours: ``accelerate launch --num_processes 1 ... bin/train.py --config bench.yaml`` (the README's job);
- HF: ``python bench/hf_kfold.py`` (HF ``Trainer`` as usually written: bench/hf_kfold.py says what is alike);
- ours on 2 processes under DeepSpeed ZeRO-2 (``ds_configs/accelerate/cpu_2proc_zero2.yaml``), batch 16 per
  process so the global batch stays 32 (reported, not part of the goal: 2 processes share the same cores).

Same for all: the built-in text set (bench/textset.py: 2,400 rows, 6 classes, 5-128 tokens, long-tailed
lengths), a DeBERTa-v2 (hidden 256 x 4 layers) built from one config with seeded weights and the tokenizer
learned from the text, saved once and loaded by every contender; stratified folds from the same seed; epochs,
batch size, lr, weight decay, warmup, linear decay, clipping, fp32; evaluation per epoch keeping the best
model by macro F1; the validation rows of each fold predicted by its best model; OOF accuracy from those.
Our console output (stdout + stderr, off a terminal) is counted too. The box may be shared: the
ratio of one run is what to read, with the machine load printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from tests.subprocess_env import free_port  # noqa: E402

GOAL_SPEEDUP = 1.3
GOAL_ACCURACY_MARGIN = 0.01


def make_inputs(work: Path, rows: int) -> tuple[Path, Path]:
    import textset
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    data = work / "data.csv"
    frame = textset.text_frame(num_rows=rows)
    frame.to_csv(data, index=False)
    return data, textset.save_model(work / "model", frame, shape="bench")


def write_config(work: Path, args, data: Path, model: Path) -> Path:
    import yaml

    config = {
        "data": {"path": str(data), "id_column": "id", "max_length": 128},
        "model": {"model_name_or_path": str(model)},
        "train": {
            "lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size, "eval_batch_size": 64,
            "warmup_steps": args.warmup, "weight_decay": 0.01, "max_grad_norm": 1.0, "seed": 42,
            "metric": "f1_macro",
        },
        "folds": {"num_folds": args.folds, "seed": 42},
        "run": {"output_dir": str(work / "runs")},
    }  # fmt: skip
    path = work / "bench.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "OMP_NUM_THREADS"))}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", ACCELERATE_CONFIG_FILE=os.devnull)
    return env


def timed(cmd: list[str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w") as sink:
        proc = subprocess.run(cmd, cwd=REPO, env=_env(), stdout=sink, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{cmd[:4]} failed (exit {proc.returncode}):\n{log.read_text()[-3000:]}")
    return seconds


def contenders(args, work: Path, config: Path, data: Path, model: Path) -> dict[str, list[str]]:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--main_process_port", str(free_port())]
    train = [str(REPO / "bin" / "train.py"), "--config", str(config)]
    jobs = {
        "ours, 1 process": launch + ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
                                     "--dynamo_backend", "no"] + train + ["--run.run_name", "one"],
        "HF Trainer script": [sys.executable, str(REPO / "bench" / "hf_kfold.py"), "--data", str(data),
                              "--model", str(model), "--out", str(work / "hf"), "--folds", str(args.folds),
                              "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                              "--lr", str(args.lr), "--warmup", str(args.warmup)],
    }  # fmt: skip
    if not args.skip_zero2:
        zero2 = str(REPO / "ds_configs" / "accelerate" / "cpu_2proc_zero2.yaml")
        jobs["ours, 2 processes ZeRO-2"] = (
            launch + ["--config_file", zero2] + train
            + ["--run.run_name", "zero2", "--train.batch_size", str(args.batch_size // 2)]
        )  # fmt: skip
    return jobs


def oof_accuracy(name: str, work: Path) -> float:
    if name.startswith("HF"):
        return json.loads((work / "hf" / "result.json").read_text())["oof"]["accuracy"]
    run = "one" if "1 process" in name else "zero2"
    return json.loads((work / "runs" / run / "cv.json").read_text())["oof"]["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2400)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--skip-zero2", action="store_true", help="leave out the 2-process ZeRO-2 run")
    parser.add_argument("--keep", type=Path, help="keep runs and logs in this folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_trainer_") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data, model = make_inputs(work, args.rows)
        config = write_config(work, args, data, model)
        results = {}
        for name, cmd in contenders(args, work, config, data, model).items():
            load = os.getloadavg()[0]
            log = work / f"{name.split(',')[0].split()[0]}_{len(results)}.log"
            seconds = timed(cmd, log)
            lines = len(log.read_text(errors="replace").splitlines())
            results[name] = {"seconds": seconds, "accuracy": oof_accuracy(name, work), "lines": lines, "load": load}
            print(f"{name}: {seconds:.1f} s, OOF accuracy {results[name]['accuracy']:.4f}", flush=True)
    report(args, results)


def report(args, results: dict) -> None:
    import torch

    print(
        f"\n{os.cpu_count()} CPUs, torch {torch.__version__}; {args.rows} rows, {args.folds} folds x "
        f"{args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, fp32, DeBERTa-v2 h256 x 4\n"
    )
    hf = results["HF Trainer script"]
    print("| job | wall s | OOF accuracy | console lines | load avg at start | HF time / this |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        print(f"| {name} | {r['seconds']:.1f} | {r['accuracy']:.4f} | {r['lines']} | {r['load']:.1f} | "
              f"{hf['seconds'] / r['seconds']:.2f}x |")  # fmt: skip
    ours = results["ours, 1 process"]
    speedup = hf["seconds"] / ours["seconds"]
    met = speedup >= GOAL_SPEEDUP and ours["accuracy"] >= hf["accuracy"] - GOAL_ACCURACY_MARGIN
    print(
        f"\ngoal (ours >= {GOAL_SPEEDUP}x the HF script, OOF accuracy >= HF - {GOAL_ACCURACY_MARGIN}): "
        f"{speedup:.2f}x, {ours['accuracy'] - hf['accuracy']:+.4f}: {'met' if met else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
