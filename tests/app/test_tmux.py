"""The installed console script in a real terminal: tmux runs `ckpt-tui TREE`, we send keys and read the screen."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.fixtures import synthetic as syn
from tests.fixtures.pilot import age_tree, build_tree

TMUX = shutil.which("tmux")
SCRIPT = Path(sys.executable).parent / "ckpt-tui"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed (CI installs it: apt-get install tmux)"),
]


_server: list[str] = []  # this test's own tmux server (socket name)


@pytest.fixture(autouse=True)
def own_tmux_server():
    """A tmux server per test (``-L``): when a test's last session ends its server exits, and a next test
    that asks that exiting server for a session fails now and then ("server exited unexpectedly")."""
    _server[:] = [f"ckpt-tui-test-{uuid.uuid4().hex[:8]}"]
    yield
    subprocess.run([TMUX, "-L", _server[0], "kill-server"], capture_output=True)


def tmux(*args: str) -> str:
    return subprocess.run([TMUX, "-L", _server[0], *args], capture_output=True, text=True, check=True).stdout


def wait_for(session: str, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-p", "-t", session)
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared; screen was:\n{screen}")


def test_console_script_in_tmux(tmp_path):
    assert SCRIPT.exists(), f"{SCRIPT} missing: run `pip install -e .`"
    root = build_tree(tmp_path / "tree")
    session = f"ckpt-tui-test-{uuid.uuid4().hex[:8]}"
    # COLUMNS/LINES (pytest sets them) would override the pane size inside the app: drop them.
    tmux(
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "100",
        "-y",
        "30",
        f"env -u COLUMNS -u LINES {SCRIPT} {root} --poll 0; sleep 30",
    )
    try:
        wait_for(session, "checkpoint-4")
        wait_for(session, "11 checkpoints")
        assert "Delete" in wait_for(session, "Quit")  # the Footer
        tmux("send-keys", "-t", session, "?")
        wait_for(session, "app.promote")  # the help screen lists binding ids
        tmux("send-keys", "-t", session, "Escape")
        # a key sent right after Escape would read as alt+key: wait until the help screen is gone
        deadline = time.monotonic() + 10
        while "app.promote" in tmux("capture-pane", "-p", "-t", session) and time.monotonic() < deadline:
            time.sleep(0.2)
        tmux("send-keys", "-t", session, "/")
        wait_for(session, "enter/esc to return")  # the filter input is up
        time.sleep(0.3)
        tmux("send-keys", "-t", session, "-l", "fold_1")
        screen = wait_for(session, "filter: 'fold_1'")
        assert "checkpoint-4" not in screen
        tmux("send-keys", "-t", session, "Enter")
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "ckpt-tui" in tmux(
            "list-panes", "-t", session, "-F", "#{pane_current_command}"
        ):
            time.sleep(0.2)
        assert "ckpt-tui" not in tmux("list-panes", "-t", session, "-F", "#{pane_current_command}")
    finally:
        subprocess.run([TMUX, "-L", _server[0], "kill-session", "-t", session], capture_output=True)


def test_hostile_names_never_reach_the_real_terminal(tmp_path):
    """Folder names holding SGR, OSC (retitle) and newline sequences: tmux must receive them as escaped
    text, so its grid shows the backslash forms, no cell is coloured by a name and the title stays."""
    root = tmp_path / "tree"
    for name in ("evil\x1b[31mred", "t\x1b]0;PWNED\x07x", "a\nb"):
        syn.write_hf_model(root / name / "model", tokenizer=False)
    age_tree(root)
    session = f"ckpt-tui-test-{uuid.uuid4().hex[:8]}"
    command = f"env -u COLUMNS -u LINES {SCRIPT} {shlex.quote(str(root))} --poll 0; sleep 30"
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", command)
    try:
        screen = wait_for(session, "3 checkpoints")
        for shown in ("evil\\x1b[31mred", "t\\x1b]0;PWNED\\x07x", "a\\x0ab"):
            assert shown in screen, screen
        with_escapes = tmux("capture-pane", "-p", "-e", "-t", session)
        assert "\x1b[31mred" not in with_escapes  # no cell coloured by the name's own SGR
        assert "PWNED" not in tmux("display-message", "-p", "-t", session, "#{pane_title}")
    finally:
        subprocess.run([TMUX, "-L", _server[0], "kill-session", "-t", session], capture_output=True)



def row_of(screen: str, name: str) -> str:
    return next(line for line in screen.splitlines() if name in line)


def test_resizing_the_real_terminal_reflows_the_columns(tmp_path):
    """A real SIGWINCH: shrink to 60 columns and the broken row still shows its kind and status (the
    name is squeezed first); widen to 200 and the Params column appears."""
    root = build_tree(tmp_path / "tree")
    session = f"ckpt-tui-test-{uuid.uuid4().hex[:8]}"
    tmux(
        "new-session", "-d", "-s", session, "-x", "120", "-y", "30",
        f"env -u COLUMNS -u LINES {SCRIPT} {root} --poll 0; sleep 30",
    )  # fmt: skip
    try:
        screen = wait_for(session, "11 checkpoints")
        assert "Params" in screen and "✖ broken" in row_of(screen, "bad_model")
        for width in (60, 200, 80):
            tmux("resize-window", "-t", session, "-x", str(width), "-y", "30")

            def reflowed(screen: str, width: int = width) -> bool:
                bad = next((line for line in screen.splitlines() if "bad_model" in line), "")
                return "✖ broken" in bad and "hf-model" in bad and ("Params" in screen) == (width >= 120)

            deadline = time.monotonic() + 10
            screen = tmux("capture-pane", "-p", "-t", session)
            while not reflowed(screen) and time.monotonic() < deadline:
                time.sleep(0.2)
                screen = tmux("capture-pane", "-p", "-t", session)
            assert reflowed(screen), (width, screen)
            assert max(len(line) for line in screen.splitlines()) <= width
        tmux("send-keys", "-t", session, "q")
    finally:
        subprocess.run([TMUX, "-L", _server[0], "kill-session", "-t", session], capture_output=True)
