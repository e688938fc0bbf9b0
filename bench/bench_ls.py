"""`ckpt-tui ls ROOT --json` and `ckpt-tui inspect INDEX_FOLDER --json` on real shapes, as a user runs
them (fresh processes), against the script a user writes today: `safe_open(framework="pt")` over every
safetensors file, torch imported. Side by side in one run, alternating A/B.

Trees (bench/shapes.py): N checkpoints shaped like deberta-v3-xsmall fine-tunes (203 tensors per
model.safetensors, HF Trainer checkpoint-N folders with optimizer/scheduler/rng pickles, fold models);
a 100-shard / ~97 GB sparse index of 10,000 tensors.

Contenders, each a fresh process, median of --runs:
* ours, first run: an empty cache (a new XDG_CACHE_HOME each run);
* ours, repeat run: the cache the first run left;
* baseline: safe_open(framework="pt") + get_slice shape/dtype of every tensor of every file.

Prints a markdown table whose rows paste into README's benchmark table, with wall medians, ratios
(baseline / ours), user+system CPU medians (steadier than wall on a shared box), peak RSS, and
whether torch was imported by ours.

    python bench/bench_ls.py [--checkpoints 1000] [--runs 5] [--big]   # --big: also 10,000 checkpoints
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

import shapes  # noqa: E402

BASELINE = r"""
import json, os, sys
import torch
from safetensors import safe_open
out = []
for folder, dirs, files in os.walk(sys.argv[1]):
    dirs.sort()
    for name in sorted(files):
        if name.endswith(".safetensors"):
            path = os.path.join(folder, name)
            with safe_open(path, framework="pt") as f:
                n = 0
                for key in f.keys():
                    sl = f.get_slice(key)
                    sl.get_shape(), sl.get_dtype()
                    n += 1
            out.append({"path": path, "tensors": n})
print(json.dumps(out)[:0], len(out))
"""

OURS = r"""
import sys
from tui.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
import resource
sys.stderr.write("TORCH=%s RSS=%d\n" % ("torch" in sys.modules, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
sys.exit(code)
"""

RACY_WAIT = 2.5  # the cache does not store keys younger than 2 s: let the tree age first


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str, str]:
    """(wall seconds, child CPU seconds, stdout, stderr) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, p.stdout, p.stderr


def measure(name: str, target: Path, args: list[str], runs: int, tmp: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CKPT_TUI_NO_CACHE", None)
    ours_cmd = [sys.executable, "-c", OURS, *args]
    base_cmd = [sys.executable, "-c", BASELINE, str(target)]
    first, repeat, base = [], [], []
    first_cpu, repeat_cpu, base_cpu = [], [], []
    torch_seen = False
    lines = None
    rss: list[float] = []
    for i in range(runs):  # A B A B: every contender sees the same machine state
        env["XDG_CACHE_HOME"] = str(tmp / f"cache-{name}-{i}")
        w, c, out, err = run(ours_cmd, env)
        first.append(w)
        first_cpu.append(c)
        torch_seen |= "TORCH=True" in err
        rss.append(int(err.rsplit("RSS=", 1)[1].split()[0]) / 1024)
        w, c, out2, err = run(ours_cmd, env)
        repeat.append(w)
        repeat_cpu.append(c)
        torch_seen |= "TORCH=True" in err
        assert out2 == out, "the repeat run printed something else than the first run"
        lines = out.count("\n")
        w, c, _, _ = run(base_cmd, env)
        base.append(w)
        base_cpu.append(c)
    med = statistics.median
    return {
        "name": name,
        "first": med(first),
        "repeat": med(repeat),
        "base": med(base),
        "first_cpu": med(first_cpu),
        "repeat_cpu": med(repeat_cpu),
        "base_cpu": med(base_cpu),
        "torch": torch_seen,
        "lines": lines,
        "rss_mb": max(rss),
    }


def row(r: dict, what: str, goal: str) -> str:
    f, p, b = r["first"], r["repeat"], r["base"]
    return (
        f"| {what} (`bench_ls.py`) | first run {f:.3f} s, repeat {p:.3f} s | "
        f'`safe_open(framework="pt")` + torch import: {b:.3f} s | first {b / f:.1f}x, repeat {b / p:.1f}x '
        f"(CPU: {r['base_cpu'] / r['first_cpu']:.1f}x, {r['base_cpu'] / r['repeat_cpu']:.1f}x) | {goal} |"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--big", action="store_true", help="also the 10,000-checkpoint tree (builds ~2 min)")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ls-") as tmp_s:
        tmp = Path(tmp_s)
        tree = tmp / "tree"
        n = shapes.make_tree(tree, args.checkpoints)
        sharded = tmp / "sharded"
        apparent = shapes.write_sharded(sharded)
        big = None
        if args.big:
            big = tmp / "big"
            shapes.make_tree(big, 10_000)
        time.sleep(RACY_WAIT)
        results.append((measure("ls", tree, ["ls", str(tree), "--json"], args.runs, tmp), n))
        results.append((measure("inspect", sharded, ["inspect", str(sharded), "--json"], args.runs, tmp), 1))
        if big is not None:
            results.append(
                (measure("ls-big", big, ["ls", str(big), "--json"], max(3, args.runs // 2), tmp), 10_000)
            )
    load = os.getloadavg()
    print(
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; "
        f"load average {load[0]:.1f} at the end (a shared box inflates wall times: CPU ratios are steadier). "
        f"Medians of fresh processes, A/B alternating. Sharded index: {apparent / 1e9:.0f} GB apparent.\n"
    )
    print("| what (script) | ours | baseline | ratio | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    for r, count in results:
        if r["name"] == "ls":
            print(
                row(
                    r,
                    f"`ls --json`, {count:,} checkpoints x 203 tensors",
                    "first >= 3x and <= 0.5 s; repeat >= 15x and <= 0.25 s",
                )
            )
        elif r["name"] == "inspect":
            print(row(r, "`inspect --json`, 100-shard index, 10,000 tensors", ">= 15x"))
        else:
            print(row(r, f"`ls --json`, {count:,} checkpoints", "first <= 5 s; repeat <= 1 s"))
    print()
    for r, _ in results:
        print(
            f"{r['name']}: CPU s ours first {r['first_cpu']:.3f}, repeat {r['repeat_cpu']:.3f}, baseline "
            f"{r['base_cpu']:.3f}; torch imported by ours: {r['torch']}; output lines {r['lines']}; "
            f"peak RSS of ours {r['rss_mb']:.0f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
