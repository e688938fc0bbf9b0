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
