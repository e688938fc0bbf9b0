"""`ckpt-tui ROOT` over a 1,000-checkpoint tree of real shapes (bench/shapes.py): first paint and the moment
the whole list is loaded, with an empty summary cache (first run) and with the cache the first run left
(repeat), against a bare Textual app's first paint. Side by side in one run, interleaved.

Each measurement is a fresh Python process (imports included), headless at 80x24. "First paint" is the
moment Textual reports the app ready (its first frame painted), when the auto-pilot starts; "list
complete" is when the scan is done and every checkpoint is a row. Also says whether torch was imported.
Our modules are compiled first (``python -m compileall -q tui``), as ``pip install`` does: without it, and
with PYTHONDONTWRITEBYTECODE set (as on the dev box), every fresh process recompiles them (~40 ms).

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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

import shapes  # noqa: E402

CHILD = textwrap.dedent(
    """
    import time
    t0 = time.perf_counter()
    import asyncio, resource, sys
    from textual.app import App
    from textual.widgets import Static

    which, root, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if which == "bare":
        class Bare(App):
            def compose(self):
                yield Static("hello")
        app = Bare()
    else:
        from tui.app.app import make_app
        app = make_app(root, poll_interval=0)

    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    async def measure(pilot):
        # auto_pilot starts once the app is "ready": its first frame has been painted.
        painted, painted_cpu = time.perf_counter() - t0, cpu()
        rows = len(app.store.infos) if which != "bare" else 0
        complete = complete_cpu = 0.0
        if which != "bare":
            # A bare sleep, not pilot.pause: pause waits for every widget to answer a callback, and
            # polling with it every 2 ms would load the UI thread (and, through the GIL, the scan).
            while app.scanning or len(app.store.infos) < expected:
                await asyncio.sleep(0.002)
                if time.perf_counter() - t0 > 60:
                    break
            complete, complete_cpu = time.perf_counter() - t0, cpu()
        print(f"{painted:.4f} {rows} {complete:.4f} {painted_cpu:.4f} {complete_cpu:.4f} {'torch' in sys.modules}")
        app.exit()

    app.run(headless=True, size=(80, 24), auto_pilot=measure)
    """
)


def measure(which: str, root: Path, expected: int, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(cache)}
    env.pop("CKPT_TUI_NO_CACHE", None)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, which, str(root), str(expected)],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    painted, rows, complete, painted_cpu, complete_cpu, torch = out.stdout.strip().splitlines()[-1].split()
    return {
        "paint": float(painted),
        "rows": int(rows),
        "complete": float(complete),
        "paint_cpu": float(painted_cpu),
        "complete_cpu": float(complete_cpu),
        "torch": torch == "True",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="checkpoints in the tree")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (medians are reported)")
    args = parser.parse_args()
    shapes.compile_like_an_install()
    runs: dict[str, list[dict]] = {"bare": [], "first": [], "repeat": []}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp_s:
        tmp = Path(tmp_s)
        root = tmp / "tree"
        n = shapes.make_tree(root, args.n)
        time.sleep(shapes.RACY_WAIT)
        for i in range(args.repeat):  # interleaved, so every contender sees the same machine state
            cache = tmp / f"cache-{i}"
            runs["bare"].append(measure("bare", root, n, cache))
            runs["first"].append(measure("app", root, n, cache))  # an empty cache
            runs["repeat"].append(measure("app", root, n, cache))  # the cache the first run left
    med = statistics.median
    torch = any(r["torch"] for k in ("first", "repeat") for r in runs[k])
    load = os.getloadavg()[0]
    print(
        f"`ckpt-tui ROOT`, {n:,} checkpoints (bench/shapes.py), {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}, median of {args.repeat} fresh processes, load average {load:.1f} "
        "at the end (a shared box inflates wall times; CPU seconds in brackets)\n"
    )
    print("| contender | first paint (s) | list complete (s) | rows at first paint |")
    print("| --- | ---: | ---: | ---: |")
    b = med(r["paint"] for r in runs["bare"])
    print(f"| bare Textual app | {b:.3f} ({med(r['paint_cpu'] for r in runs['bare']):.3f}) | - | - |")
    for key, label in (
        ("first", "ckpt-tui ROOT, first run (empty cache)"),
        ("repeat", "ckpt-tui ROOT, repeat"),
    ):
        rs = runs[key]
        print(
            f"| {label} | {med(r['paint'] for r in rs):.3f} ({med(r['paint_cpu'] for r in rs):.3f}) | "
            f"{med(r['complete'] for r in rs):.3f} ({med(r['complete_cpu'] for r in rs):.3f}) | "
            f"{med(r['rows'] for r in rs):.0f} |"
        )
    paint = med(r["paint"] for r in runs["first"])
    first = med(r["complete"] for r in runs["first"])
    repeat = med(r["complete"] for r in runs["repeat"])
    print(
        f"\nfirst paint {paint / b:.2f}x the bare app; targets: first paint <= 0.6 s "
        f"({'met' if paint <= 0.6 else 'NOT met'}), list complete <= 1 s first ({'met' if first <= 1 else 'NOT met'}) "
        f"and <= 0.5 s repeat ({'met' if repeat <= 0.5 else 'NOT met'}); torch imported: {torch}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
