"""Header summary of a 100-shard safetensors index: ours vs safetensors.safe_open(framework="pt").

Builds, in a temp folder, ``model.safetensors.index.json`` plus 100 shards whose headers are real and
whose data is a hole (the header is written, then the file is ``truncate``d to its full size: ~100 GB
apparent, almost nothing on disk). Then it times:

* ours, warm: ``tui.core.weights.summarize_weights(folder)`` in this process, median of ``--runs``;
* ours, fresh process: ``python -c "import tui.core.weights; summarize_weights(folder)"`` wall time;
* safe_open + torch, fresh process: ``python -c "import torch; from safetensors import safe_open; ..."``
  opening every shard and reading keys, shapes and dtypes (``get_slice``), wall time, median of
  ``--fresh-runs``. This is what a tool that leans on the safetensors library pays per invocation.

Prints a markdown table with absolute times and ratios, and the machine. Targets: ours warm
<= 50 ms and >= 20x faster than safe_open + torch import.

    python bench/bench_headers.py [--shards 100] [--tensors-per-shard 8] [--runs 15] [--fresh-runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tui.core.weights import summarize_weights  # noqa: E402

ITEM = {"BF16": 2, "F32": 4}


def build(folder: Path, shards: int, per_shard: int) -> int:
    """Write the index and sparse shards; return the apparent bytes."""
    weight_map: dict[str, str] = {}
    total = 0
    for s in range(1, shards + 1):
        name = f"model-{s:05d}-of-{shards:05d}.safetensors"
        header: dict = {"__metadata__": {"format": "pt"}}
        cursor = 0
        for t in range(per_shard):
            layer = (s - 1) * per_shard + t
            dtype, shape = ("BF16", [8192, 8192]) if t % 4 else ("F32", [8192])
            size = ITEM[dtype]
            for d in shape:
                size *= d
            tname = f"model.layers.{layer}.{'mlp.weight' if t % 4 else 'norm.weight'}"
            header[tname] = {"dtype": dtype, "shape": shape, "data_offsets": [cursor, cursor + size]}
            weight_map[tname] = name
            cursor += size
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        path = folder / name
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            f.truncate(8 + len(raw) + cursor)  # a hole: no data blocks written
        total += 8 + len(raw) + cursor
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return total


SAFE_OPEN = """
import sys, time
t0 = time.perf_counter()
import torch
from safetensors import safe_open
t1 = time.perf_counter()
import glob, os
n = 0
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.safetensors"))):
    with safe_open(path, framework="pt") as f:
        for key in f.keys():
            sl = f.get_slice(key)
            sl.get_shape(); sl.get_dtype()
            n += 1
t2 = time.perf_counter()
print(n, t1 - t0, t2 - t1)
"""

OURS_FRESH = """
import sys, time
sys.path.insert(0, sys.argv[2])
t0 = time.perf_counter()
from tui.core.weights import summarize_weights
s = summarize_weights(sys.argv[1])
t1 = time.perf_counter()
assert not s.problems, s.problems
print(s.tensors, t1 - t0, "torch" in sys.modules)
"""


def fresh(code: str, *args: str) -> tuple[float, list[str]]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
    return time.perf_counter() - start, out.stdout.split()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=100)
    ap.add_argument("--tensors-per-shard", type=int, default=8)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--fresh-runs", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-headers-") as tmp:
        folder = Path(tmp)
        apparent = build(folder, args.shards, args.tensors_per_shard)
        on_disk = sum(os.stat(p).st_blocks * 512 for p in folder.iterdir())

        summary = summarize_weights(folder)  # warm the page cache and check the fixture
        assert not summary.problems and summary.shards == args.shards, summary.problems
        warm = []
        for _ in range(args.runs):
            start = time.perf_counter()
            summarize_weights(folder)
            warm.append(time.perf_counter() - start)
        ours_warm = statistics.median(warm)

        ours_fresh = []
        for _ in range(args.fresh_runs):
            wall, out = fresh(OURS_FRESH, str(folder), str(ROOT))
            assert out[2] == "False", "the core imported torch"
            ours_fresh.append(wall)
        theirs_fresh, theirs_import, theirs_read = [], [], []
        for _ in range(args.fresh_runs):
            wall, out = fresh(SAFE_OPEN, str(folder))
            assert int(out[0]) == summary.tensors
            theirs_fresh.append(wall)
            theirs_import.append(float(out[1]))
            theirs_read.append(float(out[2]))

    t_ours_fresh = statistics.median(ours_fresh)
    t_theirs = statistics.median(theirs_fresh)
    t_theirs_read = statistics.median(theirs_read)
    ms = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
    print(f"## Header summary of a {args.shards}-shard index ({summary.tensors} tensors)\n")
    print(f"Sparse shards: {apparent / 2**30:.0f} GiB apparent, {on_disk / 2**20:.1f} MiB on disk.\n")
    print("| what | time | ratio to ours (warm) |")
    print("| --- | --- | --- |")
    print(f"| ours: `summarize_weights`, warm, median of {args.runs} | {ms(ours_warm)} | 1.0x |")
    print(f"| ours: fresh process (python start + import + summary) | {ms(t_ours_fresh)} | "
          f"{t_ours_fresh / ours_warm:.1f}x |")  # fmt: skip
    print(f"| `safe_open(framework=\"pt\")` over every shard, torch already imported | {ms(t_theirs_read)} | "
          f"{t_theirs_read / ours_warm:.1f}x |")  # fmt: skip
    print(f"| `safe_open(framework=\"pt\")` + torch import, fresh process, median of {args.fresh_runs} | "
          f"{ms(t_theirs)} | **{t_theirs / ours_warm:.0f}x** |")  # fmt: skip
    print(f"\nFresh process vs fresh process: safe_open + torch is {t_theirs / t_ours_fresh:.1f}x slower.")
    print(
        f"\nMachine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}."
    )
    ok_abs = ours_warm <= 0.050
    ok_ratio = t_theirs / ours_warm >= 20
    print(
        f"Targets: ours <= 50 ms: {'met' if ok_abs else 'MISSED'}; >= 20x faster: {'met' if ok_ratio else 'MISSED'}."
    )


if __name__ == "__main__":
    main()
