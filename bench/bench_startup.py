"""First paint of `ckpt-tui ROOT` over a synthetic 1,000-checkpoint tree vs a bare Textual app.

Each measurement is a fresh Python process (imports included), headless at 80x24; "first paint" is the
moment Textual reports the app ready (its first frame painted), when the auto-pilot starts. Prints a markdown table.

    python bench/bench_startup.py [--n 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import time
    t0 = time.perf_counter()
    import sys
    from textual.app import App
    from textual.widgets import Static

    which, root = sys.argv[1], sys.argv[2]
    if which == "bare":
        class Bare(App):
            def compose(self):
                yield Static("hello")
        app = Bare()
    else:
        from tui.app.app import make_app
        app = make_app(root, poll_interval=0)

    async def first_paint(pilot):
        # auto_pilot starts once the app is "ready": its first frame has been painted.
        painted = time.perf_counter() - t0
        rows = len(getattr(app, "browser", None).infos) if which != "bare" else 0
        print(f"{painted:.4f} {rows}")
        app.exit()

    app.run(headless=True, size=(80, 24), auto_pilot=first_paint)
    """
)


def measure(which: str, root: Path) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, which, str(root)], cwd=REPO, capture_output=True, text=True, check=True
    )
    seconds, rows = out.stdout.strip().splitlines()[-1].split()
    return float(seconds), int(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="checkpoints in the synthetic tree")
    parser.add_argument("--repeat", type=int, default=3, help="runs per app (the median is reported)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.fixtures.synthetic import make_tree

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "tree"
        expected = make_tree(root, args.n)
        bare, app, rows_at_paint = [], [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine state
            bare.append(measure("bare", root)[0])
            seconds, rows = measure("app", root)
            app.append(seconds)
            rows_at_paint.append(rows)
    b, a = statistics.median(bare), statistics.median(app)
    print(
        f"First paint, {len(expected)} checkpoints, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}, median of {args.repeat} fresh processes\n"
    )
    print("| app | first paint (s) | rows loaded at first paint |")
    print("| --- | ---: | ---: |")
    print(f"| bare Textual app | {b:.3f} | - |")
    print(f"| ckpt-tui ROOT | {a:.3f} | {statistics.median(rows_at_paint):.0f} |")
    print(
        f"\nratio ckpt-tui / bare: **{a / b:.2f}x**; target first paint <= 0.6 s: "
        f"{'met' if a <= 0.6 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
