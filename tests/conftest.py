"""Fixtures for every test: no test reads or writes the real ~/.cache."""

from __future__ import annotations

import pytest

from tui.core import cache


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """A fresh summary cache directory per test, in the environment too (child processes inherit it)."""
    home = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.delenv(cache.ENV_DISABLE, raising=False)
    # One process reads: the app's first scan stays in-process (tui.core.subscan), where tests patch it;
    # the tests of the forked and the separate scans ask for more.
    monkeypatch.setenv("CKPT_TUI_PROCESSES", "1")
    cache.configure()
    yield home
    cache.configure(enabled=False)  # flushes this test's entries into its own directory, then none
