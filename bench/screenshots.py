"""The README's screenshots: the app at 120x40 over the test fixture tree (the one the snapshot tests use),
exported as SVG with ``App.save_screenshot``.

    PYTHONPATH=. python bench/screenshots.py [OUT_DIR]     # default docs/img
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tests.fixtures.pilot import build_tree, frame
from tui.app.app import make_app

SIZE = (120, 40)


async def shoot(root: str, out: Path, name: str, path: str, *keys: str, tab: str | None = None) -> Path:
    app = make_app(root, poll_interval=0)
    async with app.run_test(size=SIZE) as pilot:
        await frame(app, pilot, path, *keys, tab=tab)
        await pilot.pause(0.2)  # let the last paint land
        return Path(app.save_screenshot(filename=f"{name}.svg", path=str(out)))


async def main(out: Path) -> None:
    out = out.resolve()  # before the chdir below
    out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="ckpt-tui-shots-"))
    cwd = os.getcwd()
    try:
        build_tree(home / "runs")
        os.chdir(home)  # ROOT shows as typed: "runs"
        shots = [
            await shoot("runs", out, "browser", "hf_out/checkpoint-6", tab="training"),
            await shoot("runs", out, "fold_metrics", "run1/tiny-bert_fold_0", "f"),
        ]
    finally:
        os.chdir(cwd)
        shutil.rmtree(home, ignore_errors=True)
    for shot in shots:
        print(shot)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/img")))
