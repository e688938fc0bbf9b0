"""Starting the app must never import torch / transformers / deepspeed (a 7x slower start)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "deepspeed", "accelerate", "safetensors.torch")


def test_app_start_and_inspection_never_import_heavy_libraries(tmp_path):
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from tests.fixtures.pilot import build_tree, settle
        from tui.app.app import make_app

        root = build_tree(Path({str(tmp_path)!r}) / "tree")

        async def main():
            app = make_app(root, poll_interval=0)
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(app, pilot)
                for _ in range(6):
                    await pilot.press("down")
                    await settle(app, pilot)
                assert app.store.infos, "the scan found nothing"

        asyncio.run(main())
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r} or m in {HEAVY!r})
        print("HEAVY=" + ",".join(heavy))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY=\n" in out.stdout or out.stdout.strip().endswith("HEAVY="), out.stdout


def test_the_training_plot_library_and_the_readers_are_not_imported_at_start_up():
    # The readers (weights, pickle scan, diff) are for inspections and first scans: a repeat start
    # replays its scan snapshot without them.
    script = textwrap.dedent(
        """
        import sys
        import tui.app.app, tui.cli.app_cmd
        late = ("plotext", "textual_plotext", "pandas", "tui.core.diff", "tui.core.weights", "tui.core.pickle_scan")
        print("LOADED=" + ",".join(m for m in late if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("LOADED="), out.stdout
