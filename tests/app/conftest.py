"""Fixtures for the app tests; the helpers that drive the app live in tests/fixtures/pilot.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.pilot import build_tree


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "tree")


@pytest.fixture(autouse=True)
def no_user_keymap(tmp_path_factory, monkeypatch):
    """The app reads $XDG_CONFIG_HOME/ckpt-tui/keymap.toml: tests never see the user's own."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))


@pytest.fixture(autouse=True)
def fixed_free_space(monkeypatch):
    """The status line shows ROOT's free space: a fixed filesystem, so that no screen depends on the box's
    disk. Tests of the low-space warning set ``fixed_free_space.value``."""
    from tui.app import tasks
    from tui.core.du import FreeSpace

    holder = type("Holder", (), {"value": FreeSpace("/", 1 << 40, 1 << 39)})()
    monkeypatch.setattr(tasks, "free_space", lambda root: holder.value)
    return holder
