"""The GPU check's jobs (run by bench/gpu_check.sh): 1-GPU fp16 ZeRO-2 and bf16 ZeRO-3 K-fold jobs through
the real command on a deberta-v3-xsmall-shaped model built from its config, then their figures.

    python bench/gpu_check.py [--rows 6000 --epochs 2 --folds 5 --batch-size 32]
    python bench/gpu_check.py --cpu-smoke      # the same code on CPU: tiny model, 2 folds, no GPU figures

Per job it prints wall time, training samples/s and tokens/s (training batches only: evaluation and
checkpointing excluded, as run.json's fold_stats count them), MFU, fp16 steps skipped by the loss scaler,
peak GPU memory over the folds, the OOF accuracy, and whether every fold folder reloads with
``from_pretrained`` and predicts what training saved (exit 1 if one does not).

MFU = achieved model FLOP/s / the GPU's dense 16-bit peak. Model FLOPs per trained token: 6 x the matmul
parameters (embeddings excluded) + 12 x layers x hidden x mean padded length (attention scores and
values), the usual estimate (Kaplan et al., PaLM appendix B). DeBERTa's disentangled attention adds two
more score products, so the MFU printed is a lower bound.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from tests.gpu import lane  # noqa: E402
from tests.subprocess_env import free_port  # noqa: E402

JOBS = {  # name -> accelerate YAML (1 process: one GPU)
    "fp16 ZeRO-2": "multi_gpu_zero2_fp16.yaml",
    "bf16 ZeRO-3": "multi_gpu_zero3_bf16.yaml",
}
# Dense fp16/bf16 tensor-core peak (no sparsity), FLOP/s, by a substring of torch.cuda.get_device_name().
PEAK_16BIT = [
    ("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("GH200", 989e12), ("B200", 2250e12),
    ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12),
    ("A10G", 70e12), ("A10", 125e12), ("A6000", 155e12), ("4090", 165e12), ("3090", 71e12),
    ("V100", 125e12), ("T4", 65e12),
]  # fmt: skip


def peak_flops(device_name: str) -> float | None:
    for key, flops in PEAK_16BIT:
        if key in device_name:
            return flops
    return None


def flops_per_token(config: dict, mean_length: float) -> float:
    hidden, layers, inter = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    matmul_params = layers * (4 * hidden * hidden + 2 * hidden * inter)  # q, k, v, out; the two FFN layers
    return 6 * matmul_params + 12 * layers * hidden * mean_length


def make_inputs(work: Path, rows: int, shape: str) -> tuple[Path, Path]:
    import textset

    data = work / "data.csv"
    frame = textset.text_frame(num_rows=rows)
    frame.to_csv(data, index=False)
    model = textset.save_model(work / "deberta-v3-xsmall-shape", frame, shape=shape)
    return data, model


def train_args(args, data: Path, model: Path, out: Path, name: str) -> list[str]:
    return [
        "--data.path", str(data), "--data.id_column", "id", "--model.model_name_or_path", str(model),
        "--run.output_dir", str(out), "--run.run_name", name.replace(" ", "_"),
        "--folds.num_folds", str(args.folds), "--train.epochs", str(args.epochs),
        "--train.batch_size", str(args.batch_size), "--train.lr", str(args.lr), "--train.warmup_steps", "20",
    ]  # fmt: skip


def run_one(args, name: str, data: Path, model: Path, work: Path) -> dict:
    run_dir = work / "runs" / name.replace(" ", "_")
    log = work / f"{name.replace(' ', '_')}.log"
    wall = lane.run_job(JOBS[name], train_args(args, data, model, work / "runs", name), free_port(), log,
                        timeout=args.timeout, procs=1)  # fmt: skip
    fig = lane.figures(run_dir)
    config = json.loads((model / "config.json").read_text())
    mean_length = fig.train_tokens / max(fig.train_samples, 1)
    achieved = fig.tokens_per_s * flops_per_token(config, mean_length)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(_device_name())
    reloads = lane.reload_all(run_dir)
    ok = [r for r in reloads if r["max_prob_diff"] <= 0.05 and r["agreement"] >= 0.95]
    return {
        "job": name, "wall_s": round(wall, 1), "samples_per_s": round(fig.samples_per_s, 1),
        "tokens_per_s": round(fig.tokens_per_s), "mfu": round(achieved / peak, 4) if peak else None,
        "skipped_steps": fig.skipped_steps, "optimizer_steps": fig.optimizer_steps,
        "peak_gpu_memory_gib": round(fig.peak_gpu_memory_bytes / 2**30, 2) if fig.peak_gpu_memory_bytes else None,
        "oof_accuracy": round(fig.oof["accuracy"], 4), "folds_reloaded": f"{len(ok)}/{len(reloads)}",
        "max_reload_prob_diff": round(max((r["max_prob_diff"] for r in reloads), default=0.0), 4),
        "mean_padded_tokens": round(mean_length, 1), "log": str(log),
    }  # fmt: skip


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def table(results: list[dict]) -> str:
    lines = [
        "| job | wall s | samples/s | tokens/s | MFU | skipped fp16 steps | peak GPU GiB | OOF acc | folds reload |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        mfu = f"{100 * r['mfu']:.1f} %" if r["mfu"] is not None else "n/a"
        peak = r["peak_gpu_memory_gib"] if r["peak_gpu_memory_gib"] is not None else "n/a"
        lines.append(
            f"| {r['job']} | {r['wall_s']} | {r['samples_per_s']} | {r['tokens_per_s']} | {mfu} | "
            f"{r['skipped_steps']} of {r['optimizer_steps']} | {peak} | {r['oof_accuracy']} | {r['folds_reloaded']} |"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6000, help="rows of the built-in text set")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4, help="random init: a larger step than fine-tuning")
    parser.add_argument("--jobs", default=",".join(JOBS), help="comma-separated subset of: " + ", ".join(JOBS))
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense 16-bit peak, if not in the table")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per job before it counts as failed")
    parser.add_argument("--out", type=Path, help="keep runs and logs here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument(
        "--cpu-smoke", action="store_true",
        help="run the same code on CPU (tiny model, 300 rows, 2 folds, 1 epoch): checks the script, not a GPU",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.shape = "xsmall"
    if args.cpu_smoke:
        os.environ[lane.REHEARSAL_ENV] = "1"
        args.rows, args.folds, args.epochs, args.batch_size, args.shape = 300, 2, 1, 16, "tiny"
    unknown = set(args.jobs.split(",")) - set(JOBS)
    if unknown:
        parser.error(f"unknown job(s) {sorted(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not args.cpu_smoke and lane.gpu_count() == 0:
        print("gpu_check: no CUDA GPU visible to torch (use --cpu-smoke to check the script on CPU)", file=sys.stderr)
        return 2
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar per reloaded fold
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data, model = make_inputs(work, args.rows, args.shape)
        print(
            f"device: {_device_name()}{' (CPU smoke run: GPU figures n/a)' if args.cpu_smoke else ''}; "
            f"{args.shape} shape, {args.rows} rows, {args.folds} folds x {args.epochs} epochs, batch "
            f"{args.batch_size}, 1 process",
            flush=True,
        )
        results = []
        for name in args.jobs.split(","):
            results.append(run_one(args, name, data, model, work))
            print(f"{name}: done in {results[-1]['wall_s']} s", flush=True)
        print(table(results))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    print(f"total {time.perf_counter() - started:.0f} s")
    bad = [r["job"] for r in results if r["folds_reloaded"].split("/")[0] != r["folds_reloaded"].split("/")[1]]
    if bad:
        print(f"gpu_check: fold folders that do not reload or predict otherwise: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
