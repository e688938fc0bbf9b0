"""Scan rate of a synthetic tree of 1,000 checkpoints (warm cache), printed as a markdown table.

Two rates, measured side by side in one run:
- walk + classify: scandir walk, loop detection and name-based classification only;
- full scan: ``tui.core.scan.scan`` (sizes, safetensors headers, pickle scans, JSON side files,
  manifests, integrity rules): what ``ckpt-tui ls`` does.

    .venv/bin/python bench/bench_scan.py [--checkpoints 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.synthetic import make_tree  # noqa: E402
from tui.core.classify import classify_folder  # noqa: E402
from tui.core.names import SKIP_DIRS  # noqa: E402
from tui.core.scan import scan  # noqa: E402

TARGET_DIRS_PER_S = 5000


def walk_and_classify(root: str) -> int:
    """The scanner's walk without reading any file: returns the number of folders classified."""
    seen: set[tuple[int, int]] = set()
    stack = [root]
    found = 0
    while stack:
        path = stack.pop()
        files, dirs = set(), []
        with os.scandir(path) as it:
            for e in it:
                if e.is_dir():
                    if e.name in SKIP_DIRS:
                        continue
                    st = e.stat()
                    if (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        dirs.append(e)
                elif e.is_file():
                    files.add(e.name)
        if classify_folder(os.path.basename(path), files, {d.name for d in dirs}):
            found += 1
        stack.extend(d.path for d in dirs)
    return found


def timed(fn, repeat: int) -> float:
    fn()  # warm the page cache and the dentry cache
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoints", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        expected = make_tree(Path(tmp), args.checkpoints)
        dirs = sum(len(d) for _, d, _ in os.walk(tmp)) + 1
        files = sum(len(f) for _, _, f in os.walk(tmp))
        walk_s = timed(lambda: walk_and_classify(tmp), args.repeat)
        full_s = timed(lambda: scan(tmp), args.repeat)
        n = len(scan(tmp))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"tree: {len(expected)} checkpoints ({n} reported), {dirs} folders, {files} files; median of {args.repeat} warm runs\n"
    )
    print("| pass | seconds | folders/s | checkpoints/s | vs target 5,000 folders/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, secs in (("walk + classify", walk_s), ("full scan (ls)", full_s)):
        rate = dirs / secs
        print(f"| {name} | {secs:.3f} | {rate:,.0f} | {n / secs:,.0f} | {rate / TARGET_DIRS_PER_S:.2f}x |")
    print(f"\nfull scan / walk ratio: {full_s / walk_s:.1f}x slower")


if __name__ == "__main__":
    main()
