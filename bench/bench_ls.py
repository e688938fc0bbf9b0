"""`ckpt-tui ls ROOT --json` and `ckpt-tui inspect INDEX_FOLDER --json` on real shapes, as a user runs
them (fresh processes), against the script a user writes today: `safe_open(framework="pt")` over every
safetensors file, torch imported. Side by side in one run, alternating A/B.

Trees (bench/shapes.py): N checkpoints shaped like deberta-v3-xsmall fine-tunes (203 tensors per
model.safetensors, HF Trainer checkpoint-N folders with optimizer/scheduler/rng pickles, fold models),
whose headers are alike byte for byte as real fine-tunes of one model are; the same tree with no two
headers alike (every header parsed: the honest worst case); a 100-shard / ~97 GB sparse index of 10,000
tensors; with --big, 10,000 checkpoints.

Contenders, each a fresh process, median of --runs:
* ours, first run: an empty cache (a new XDG_CACHE_HOME each run);
* ours, repeat run: the cache the first run left;
* baseline: safe_open(framework="pt") + get_slice shape/dtype of every tensor of every file.

Our modules are compiled first (``python -m compileall -q tui``), as ``pip install`` does: without it,
and with PYTHONDONTWRITEBYTECODE set (as on the dev box), every fresh process recompiles them (~40 ms).

Prints a markdown table whose rows paste into README's benchmark table: wall medians with user+system CPU
medians in brackets (steadier than wall on a shared box), the baseline's multiple of ours for both, each
goal of issue 9 judged on CPU and on wall time, peak RSS, and whether torch was imported by ours.

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


def row(r: dict, what: str) -> str:
    """One markdown row: wall (CPU) seconds of each contender and the baseline's multiple of ours."""
    f, p, b = r["first"], r["repeat"], r["base"]
    fc, pc, bc = r["first_cpu"], r["repeat_cpu"], r["base_cpu"]
    return (
        f"| {what} | {f:.3f} ({fc:.3f}) | {p:.3f} ({pc:.3f}) | {b:.3f} ({bc:.3f}) | "
        f"{b / f:.1f}x ({bc / fc:.1f}x) | {b / p:.1f}x ({bc / pc:.1f}x) |"
    )


def verdict(
    r: dict, first_s: float | None, first_x: float | None, repeat_s: float | None, repeat_x: float | None
) -> str:
    """Each goal against the CPU seconds (what the command costs, whatever else the box runs) and the
    wall seconds; both are printed because a shared box inflates wall times."""
    out = []
    for key, limit, times in (("first", first_s, first_x), ("repeat", repeat_s, repeat_x)):
        wall, cpu = r[key], r[f"{key}_cpu"]
        if limit is not None:
            out.append(f"{key} <= {limit} s: CPU {_met(cpu <= limit)}, wall {_met(wall <= limit)}")
        if times is not None:
            out.append(
                f"{key} >= {times}x: CPU {_met(r['base_cpu'] / cpu >= times)}, wall {_met(r['base'] / wall >= times)}"
            )
    return "; ".join(out)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--big", action="store_true", help="also the 10,000-checkpoint tree (builds ~1 min)")
    args = ap.parse_args()
    shapes.compile_like_an_install()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ls-") as tmp_s:
        tmp = Path(tmp_s)
        tree, unique = tmp / "tree", tmp / "unique"
        n = shapes.make_tree(tree, args.checkpoints)
        shapes.make_tree(unique, args.checkpoints, unique_headers=True)
        sharded = tmp / "sharded"
        apparent = shapes.write_sharded(sharded)
        big = None
        if args.big:
            big = tmp / "big"
            shapes.make_tree(big, 10_000)
        time.sleep(shapes.RACY_WAIT)
        results.append(
            (
                "ls",
                f"`ls --json`, {n:,} checkpoints x 203 tensors",
                measure("ls", tree, ["ls", str(tree), "--json"], args.runs, tmp),
            )
        )
        results.append(
            (
                "unique",
                f"`ls --json`, {n:,} checkpoints, no two headers alike",
                measure("unique", unique, ["ls", str(unique), "--json"], args.runs, tmp),
            )
        )
        results.append(
            (
                "inspect",
                "`inspect --json`, 100-shard index, 10,000 tensors",
                measure("inspect", sharded, ["inspect", str(sharded), "--json"], args.runs, tmp),
            )
        )
        if big is not None:
            results.append(
                (
                    "big",
                    "`ls --json`, 10,000 checkpoints x 203 tensors",
                    measure("big", big, ["ls", str(big), "--json"], max(3, args.runs // 2), tmp),
                )
            )
    load = os.getloadavg()
    print(
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; "
        f"load average {load[0]:.1f} at the end (a shared box inflates wall times: CPU seconds in brackets). "
        f"Medians of {args.runs} fresh processes each, A/B alternating. Sharded index: {apparent / 1e9:.0f} GB "
        'apparent. Baseline: `safe_open(framework="pt")` over every safetensors file, torch imported.\n'
    )
    print(
        "| what (`bench_ls.py`) | ours, first run: wall (CPU) s | ours, repeat | baseline | first: baseline / ours | repeat: baseline / ours |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for _, what, r in results:
        print(row(r, what))
    print()
    goals = {
        "ls": (0.5, 3, 0.25, 15),
        "unique": (None, None, None, None),
        "inspect": (None, 15, None, 15),
        "big": (5, None, 1, None),
    }
    for key, what, r in results:
        if any(g is not None for g in goals[key]):
            print(f"- {what}: {verdict(r, *goals[key])}")
    print()
    for key, _, r in results:
        print(
            f"{key}: torch imported by ours: {r['torch']}; output lines {r['lines']}; peak RSS of ours {r['rss_mb']:.0f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
