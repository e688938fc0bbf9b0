"""`ckpt-tui serve` in a real browser: headless Chromium (the system's, driven by Playwright) opens the
served page over a fixture tree, waits for the checkpoint list, types a filter, opens fold metrics and
reads what the page shows; a screenshot is kept as a test artifact. Skipped without Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.pilot import build_tree
from tests.fixtures.terminal import screen_lines
from tests.subprocess_env import cpu_only, free_port

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CKPT_TUI_TEST_ARTIFACTS") or REPO / "test-artifacts")
TOKEN = "t0ken-for-the-test"


def chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture()
def served(tmp_path):
    root = build_tree(tmp_path / "tree")
    port = free_port()
    env = dict(cpu_only(), PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "serve", str(root), "--port", str(port), "--token", TOKEN],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base, timeout=1)
            except urllib.error.HTTPError as e:
                assert e.code == 403  # up, and the page without its token is refused
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "serve did not start listening"
                time.sleep(0.2)
        yield f"{base}?token={TOKEN}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait_for(page, read, text: str, timeout: float = 40) -> str:
    """Poll the page's text; waiting through Playwright lets it deliver the websocket frames meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = read()
        if text in screen:
            return screen
        page.wait_for_timeout(250)
    raise AssertionError(f"{text!r} never appeared; the page shows:\n{read()}")


@pytest.mark.slow
def test_served_app_in_chromium(served):
    executable = chromium()
    if executable is None:
        pytest.skip("no Chromium installed (apt-get install chromium; .ci/run installs it)")
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install playwright)"
    )
    frames: list[bytes] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            # xterm.js draws into a canvas: the page's text is rebuilt from the terminal output it receives.
            page.on(
                "websocket",
                lambda ws: ws.on("framereceived", lambda f: isinstance(f, bytes) and frames.append(f)),
            )

            def read() -> str:
                return "\n".join(screen_lines(b"".join(frames)))

            page.goto(served)
            _wait_for(page, read, "tiny-bert_fold_1")
            assert re.search(r"\d+ checkpoints · sort", _wait_for(page, read, "checkpoints · sort"))
            page.locator(".xterm").click()
            page.keyboard.type("/tiny-bert_fold_1")
            page.keyboard.press("Enter")
            screen = _wait_for(page, read, "filter: 'tiny-bert_fold_1'")
            assert "hf_out" not in screen and "checkpoint-4" not in screen
            page.keyboard.type("f")
            screen = _wait_for(page, read, "Fold metrics · run1")
            assert "OOF" in screen and "mean±std" in screen and "f1_macro" in screen
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "serve_fold_metrics.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()


def test_ws_from_another_origin_and_bad_token_refused(served):
    aiohttp = pytest.importorskip("aiohttp")
    import asyncio

    base = served.split("?")[0].replace("http", "ws")

    async def status(url: str, origin: str | None) -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(url, headers={"Origin": origin} if origin else {}):
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return e.status

    host = served.split("/")[2]
    assert asyncio.run(status(f"{base}ws/wrong", None)) == 403
    assert asyncio.run(status(f"{base}ws/{TOKEN}", "http://evil.example")) == 403
    assert asyncio.run(status(f"{base}ws/{TOKEN}", f"http://{host}")) == 101
